// A protobuf wire reader for the small messages containerd wraps in google.protobuf.Any (ProcessDetails, task events):
// the loaded .proto types give no decoder for an Any's payload, and these messages are a few scalar fields.

/** Field number → values in order: strings for length-delimited fields, numbers for varints and fixed ones. */
export type WireFields = Map<number, (string | number)[]>;

export class WireError extends Error {
  override name = "WireError";
}

function readVarint(bytes: Uint8Array, at: number): { value: number; next: number } {
  let value = 0;
  let scale = 1;
  for (let i = at; i < bytes.length && i < at + 10; i++) {
    const byte = bytes[i] as number;
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if ((byte & 0x80) === 0) return { value, next: i + 1 };
  }
  throw new WireError(`truncated varint at byte ${at}`);
}

/** Decodes one message's fields; throws WireError on bytes that are not a protobuf message. */
export function decodeFields(bytes: Uint8Array): WireFields {
  const fields: WireFields = new Map();
  const push = (field: number, value: string | number): void => {
    const list = fields.get(field);
    if (list) list.push(value);
    else fields.set(field, [value]);
  };
  let at = 0;
  while (at < bytes.length) {
    const key = readVarint(bytes, at);
    at = key.next;
    const field = Math.floor(key.value / 8);
    const wireType = key.value % 8;
    if (field === 0) throw new WireError(`field number 0 at byte ${at}`);
    switch (wireType) {
      case 0: {
        const v = readVarint(bytes, at);
        push(field, v.value);
        at = v.next;
        break;
      }
      case 1:
        if (at + 8 > bytes.length) throw new WireError(`truncated fixed64 at byte ${at}`);
        push(field, Number(new DataView(bytes.buffer, bytes.byteOffset + at, 8).getBigUint64(0, true)));
        at += 8;
        break;
      case 2: {
        const length = readVarint(bytes, at);
        const end = length.next + length.value;
        if (end > bytes.length) throw new WireError(`length ${length.value} at byte ${at} runs past the end`);
        push(field, new TextDecoder("utf-8").decode(bytes.subarray(length.next, end)));
        at = end;
        break;
      }
      case 5:
        if (at + 4 > bytes.length) throw new WireError(`truncated fixed32 at byte ${at}`);
        push(field, new DataView(bytes.buffer, bytes.byteOffset + at, 4).getUint32(0, true));
        at += 4;
        break;
      default:
        throw new WireError(`wire type ${wireType} at byte ${at} is not supported`);
    }
  }
  return fields;
}

/** The first string of `field`, or "" (proto3's default) when absent. */
export function stringField(fields: WireFields, field: number): string {
  const value = fields.get(field)?.[0];
  return typeof value === "string" ? value : "";
}

/** The first number of `field`, or 0 when absent. */
export function numberField(fields: WireFields, field: number): number {
  const value = fields.get(field)?.[0];
  return typeof value === "number" ? value : 0;
}

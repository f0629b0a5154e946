// The protobuf wire reader for containerd's Any payloads, and what the adapter makes of them.
import { describe, expect, it } from "vitest";
import { ContainerdRuntime, execEventOf, execIdOfProcessInfo, isExecId } from "../../../src/runtimes/containerd/containerd.js";
import { WireError, decodeFields, numberField, stringField } from "../../../src/runtimes/containerd/wire.js";
import { kubernetesRefOf } from "../../../src/domain/runtime.js";

/** Encodes a varint, for building messages by hand. */
function varint(value: number): number[] {
  const bytes: number[] = [];
  while (value >= 0x80) {
    bytes.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  bytes.push(value);
  return bytes;
}
const str = (field: number, text: string): number[] => [...varint(field * 8 + 2), ...varint(Buffer.byteLength(text)), ...Buffer.from(text)];
const num = (field: number, value: number): number[] => [...varint(field * 8), ...varint(value)];
const bytes = (...parts: number[][]): Buffer => Buffer.from(parts.flat());

const EXEC = "611bcaf1e93c3b19f59a119b3f790e1edb417fd83e69998b2035409604ea67d5";
const CID = "247f3aebe93f7762087c8fed37d659d779ddb574a5fa440ccd80e997737caa7c";

describe("decodeFields", () => {
  it.each([
    ["empty message", bytes(), {}],
    ["one string", bytes(str(1, EXEC)), { 1: [EXEC] }],
    ["strings and a varint", bytes(str(1, CID), str(2, EXEC), num(3, 1_234_567)), { 1: [CID], 2: [EXEC], 3: [1_234_567] }],
    ["a repeated field", bytes(str(1, "a"), str(1, "b")), { 1: ["a", "b"] }],
    ["fixed32 and fixed64", bytes([0x0d, 1, 0, 0, 0], [0x11, 2, 0, 0, 0, 0, 0, 0, 0]), { 1: [1], 2: [2] }],
    ["a large varint (pid_max)", bytes(num(3, 4_194_304)), { 3: [4_194_304] }],
  ])("%s", (_name, input, expected) => {
    expect(Object.fromEntries(decodeFields(input))).toEqual(expected);
  });

  it.each([
    ["a truncated varint", Buffer.from([0x08, 0x80])],
    ["a length past the end", Buffer.from([0x0a, 0x05, 0x61])],
    ["field number 0", Buffer.from([0x00, 0x01])],
    ["a group (wire type 3)", Buffer.from([0x0b])],
    ["a truncated fixed32", Buffer.from([0x0d, 1, 2])],
  ])("rejects %s", (_name, input) => {
    expect(() => decodeFields(input)).toThrow(WireError);
  });

  it("gives proto3 defaults for absent fields", () => {
    const fields = decodeFields(bytes(str(1, "x")));
    expect(stringField(fields, 2)).toBe("");
    expect(numberField(fields, 3)).toBe(0);
    expect(numberField(fields, 1)).toBe(0); // a string is not a number
  });
});

describe("execIdOfProcessInfo", () => {
  it.each([
    ["an exec's ProcessDetails", { type_url: "containerd.runc.v1.ProcessDetails", value: bytes(str(1, EXEC)) }, EXEC],
    ["a type URL with a host part", { type_url: "types.containerd.io/containerd.runc.v1.ProcessDetails", value: bytes(str(1, EXEC)) }, EXEC],
    ["the init (no info)", null, null],
    ["ProcessDetails with an empty exec ID", { type_url: "containerd.runc.v1.ProcessDetails", value: bytes() }, null],
    ["another message type", { type_url: "containerd.other.v1.Thing", value: bytes(str(1, EXEC)) }, null],
  ])("%s", (_name, info, expected) => {
    expect(execIdOfProcessInfo(info)).toBe(expected);
  });
});

describe("execEventOf", () => {
  const started = { type_url: "containerd.events.TaskExecStarted", value: bytes(str(1, CID), str(2, EXEC), num(3, 4242)) };
  it("reads TaskExecStarted", () => {
    expect(execEventOf({ namespace: "k8s.io", topic: "/tasks/exec-started", event: started })).toEqual({
      topic: "/tasks/exec-started",
      namespace: "k8s.io",
      containerId: CID,
      execId: EXEC,
      pid: 4242,
    });
  });
  it("reads TaskExit (id in field 2, exit status ignored)", () => {
    const exit = { type_url: "containerd.events.TaskExit", value: bytes(str(1, CID), str(2, EXEC), num(3, 4242), num(4, 137)) };
    expect(execEventOf({ namespace: "k8s.io", topic: "/tasks/exit", event: exit })).toMatchObject({ topic: "/tasks/exit", execId: EXEC, pid: 4242 });
  });
  it.each([["/tasks/create"], ["/containers/update"]])("ignores topic %s", (topic) => {
    expect(execEventOf({ namespace: "k8s.io", topic, event: started })).toBeNull();
  });
});

describe("kubernetesRefOf", () => {
  const labels = {
    "io.kubernetes.pod.namespace": "shop",
    "io.kubernetes.pod.name": "web-7d9",
    "io.kubernetes.pod.uid": "5d1c8a2e-9b3f-4c7d-8e6a-1f2b3c4d5e6f",
    "io.kubernetes.container.name": "app",
  };
  it("reads the kubelet's labels", () => {
    expect(kubernetesRefOf(labels)).toEqual({ namespace: "shop", pod: "web-7d9", podUid: "5d1c8a2e-9b3f-4c7d-8e6a-1f2b3c4d5e6f", container: "app" });
  });
  it("is null for a sandbox (no container name) or a plain container", () => {
    const { "io.kubernetes.container.name": _dropped, ...sandbox } = labels;
    expect(kubernetesRefOf(sandbox)).toBeNull();
    expect(kubernetesRefOf({ "com.example": "x" })).toBeNull();
  });
  it("keeps the identity when the uid label is missing", () => {
    const { "io.kubernetes.pod.uid": _dropped, ...noUid } = labels;
    expect(kubernetesRefOf(noUid)?.podUid).toBeNull();
  });
});

describe("killing through containerd never reaches the init", () => {
  it.each([
    ["an exec ID", EXEC, true],
    ["empty (Tasks.Kill would signal the init)", "", false],
    ["blank", "  ", false],
    ["padded", ` ${EXEC}`, false],
    ["the container's own ID", CID, false],
  ])("isExecId: %s", (_name, execId, expected) => {
    expect(isExecId(execId, CID)).toBe(expected);
  });

  it("killExec refuses an empty exec ID before any call", async () => {
    const runtime = new ContainerdRuntime({ socket: "/nonexistent/ptyreaper-test.sock", namespaces: ["k8s.io"], callTimeoutMs: 500 });
    try {
      await expect(runtime.killExec({ id: "", container: { namespace: "k8s.io", id: CID } }, "SIGKILL")).rejects.toThrow(
        /refusing to kill through containerd: "" is not an exec ID/,
      );
    } finally {
      runtime.close();
    }
  });
});

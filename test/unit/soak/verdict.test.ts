// The soak's verdict (soak/soak.ts notFlat): which start, mid and end figures count as flat.
import { describe, expect, it } from "vitest";
import { notFlat, type SoakFigures, type Usage } from "../../../soak/soak.js";

const usage = (over: Partial<Usage> = {}): Usage => ({
  rssMb: 100,
  heapUsedMb: 20,
  fds: 30,
  series: 130,
  ptyreaperSeries: 46,
  gcSeries: 27,
  activeHandles: 6,
  containers: 3,
  sessions: 5,
  ...over,
});

const figures = (start: Partial<Usage>, mid: Partial<Usage>, end: Partial<Usage>, failedCycles = 0): SoakFigures => ({
  cycles: 10_000,
  failedCycles,
  seconds: 50,
  start: usage(start),
  mid: usage(mid),
  end: usage(end),
  peakRssMb: 120,
  churn: { containersStarted: 10, containersRemoved: 8, sessionsStarted: 90, shortExecs: 70, errors: 0 },
  reaped: 30,
});

describe("notFlat", () => {
  it("accepts warm-up growth before the half-way mark and a flat second half", () => {
    expect(notFlat(figures({ rssMb: 97 }, { rssMb: 114 }, { rssMb: 115.5 }))).toEqual([]);
  });

  it("names RSS that still grows over the second half", () => {
    expect(notFlat(figures({ rssMb: 97 }, { rssMb: 110 }, { rssMb: 125 }))).toEqual(["RSS still grew over the second half, from 110 MiB to 125 MiB"]);
  });

  it("names every figure that grew, and failed cycles", () => {
    const problems = notFlat(figures({ fds: 30, activeHandles: 6 }, {}, { fds: 40, activeHandles: 12, ptyreaperSeries: 60, series: 144 }, 2));
    expect(problems).toEqual([
      "2 cycles failed",
      "open fds grew from 30 to 40",
      "active handles grew from 6 to 12",
      "ptyreaper series grew from 46 to 60",
    ]);
  });

  it("judges memory only when asked (short runs judge the rest)", () => {
    expect(notFlat(figures({ rssMb: 50, heapUsedMb: 10 }, { rssMb: 60 }, { rssMb: 200, heapUsedMb: 90 }), { memory: false })).toEqual([]);
    expect(notFlat(figures({ rssMb: 50, heapUsedMb: 10 }, { rssMb: 60 }, { rssMb: 200, heapUsedMb: 90 }))).toEqual([
      "heap grew from 10 MiB to 90 MiB",
      "RSS grew from 50 MiB to 200 MiB",
      "RSS still grew over the second half, from 60 MiB to 200 MiB",
    ]);
  });
});

// `npm run soak [-- CYCLES]`: the soak on a private dockerd; prints the start and end figures, exits 1 unless flat.
import { notFlat, runSoak, type Usage } from "./soak.js";
import { startPrivateDockerd } from "../test/integration/support/dockerd.js";

const cycles = Number(process.argv[2] ?? 10_000);
if (!Number.isInteger(cycles) || cycles < 100) {
  process.stderr.write("usage: npm run soak [-- CYCLES]   (at least 100; default 10000)\n");
  process.exit(64);
}

const row = (label: string, u: Usage): string =>
  `${label.padEnd(6)} rss ${u.rssMb} MiB  heap ${u.heapUsedMb} MiB  fds ${u.fds}  handles ${u.activeHandles}  series ${u.series} (ptyreaper ${u.ptyreaperSeries}, gc ${u.gcSeries})  ` +
  `containers ${u.containers}  sessions ${u.sessions}`;

const engine = await startPrivateDockerd("soak");
let code = 1;
try {
  process.stdout.write(`soak: ${cycles} cycles on a private dockerd (${engine.socket}), churning containers and exec sessions\n`);
  const figures = await runSoak({
    cycles,
    socket: engine.socket,
    onProgress: (done, u) => process.stdout.write(`${row(`${done}`, u)}\n`),
  });
  process.stdout.write(`${row("start", figures.start)}\n${row("mid", figures.mid)}\n${row("end", figures.end)}\n`);
  process.stdout.write(
    `${figures.cycles} cycles in ${figures.seconds.toFixed(0)} s (${((figures.seconds * 1000) / figures.cycles).toFixed(1)} ms each), ` +
      `${figures.failedCycles} failed; peak RSS ${figures.peakRssMb} MiB; reaped ${figures.reaped}; churn ${JSON.stringify(figures.churn)}\n`,
  );
  process.stdout.write(`${JSON.stringify(figures)}\n`);
  const problems = notFlat(figures);
  if (problems.length === 0) {
    process.stdout.write("soak: flat\n");
    code = 0;
  } else {
    for (const p of problems) process.stdout.write(`soak: NOT FLAT: ${p}\n`);
  }
} finally {
  await engine.destroy();
}
process.exit(code);

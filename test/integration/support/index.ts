// The integration-test harness in one import: real Docker sessions, real ptys, polling and cleanup.
export * from "./docker.js";
export * from "./leak.js";
export * from "./pty.js";
export { cleanupAll, killAndWait, tracked } from "./track.js";
export * from "./util.js";

// The stages of a poll cycle: the one list behind ptyreaper_poll_errors_total{stage}.

/**
 * In cycle order. Collect: limits, scan, docker. After collect each step runs in its own guard:
 * policy, release (confirming reaped ptys are gone), reap, publish (metrics from the snapshot),
 * record (cycle duration and time), notify (watchdog and readiness). cycle: an error that escaped
 * every guard, counted so it can never pass unseen.
 */
export const POLL_STAGES = ["limits", "scan", "docker", "policy", "release", "reap", "publish", "record", "notify", "cycle"] as const;

export type PollStage = (typeof POLL_STAGES)[number];

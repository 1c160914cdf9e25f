// The five numbers of the users' quick reference, from what a lock counted
// (stats()) and what its nodes answered (health()): lock acquisition rate,
// lock hold duration, lock extension failures, node PING times, lock
// conflicts. The keeper, the demo's keepers and the telemetry example print
// them when they stop.

import type { HealthReport, Stats } from '..'

/** One line: the five numbers over `elapsedMs`, with the hold durations the caller measured. */
export function fiveNumbers(stats: Stats, health: HealthReport | null, elapsedMs: number, holdsMs: number[]): string {
  const tries = stats.acquired + stats.held + stats.unavailable + stats.aborted
  const perMinute = (stats.acquired * 60_000) / Math.max(elapsedMs, 1)
  const meanHold = holdsMs.length === 0 ? null : holdsMs.reduce((sum, ms) => sum + ms, 0) / holdsMs.length
  const pings = health?.nodes.map((node) => (node.latencyMs === null ? 'down' : `${node.latencyMs.toFixed(2)}`)).join('/') ?? 'unknown'
  return [
    `acquisition rate ${perMinute.toFixed(1)}/min (${stats.acquired} of ${tries} tries)`,
    `hold duration ${meanHold === null ? 'none' : `${(meanHold / 1000).toFixed(1)} s mean of ${holdsMs.length}`}`,
    `extension failures ${stats.extensionFailures} (${stats.extended} extended, ${stats.lost} lost)`,
    `node PING ${pings} ms`,
    `lock conflicts ${stats.held}`,
  ].join(' | ')
}

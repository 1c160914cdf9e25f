// The checker of the fault suite: pure functions over the belief intervals
// the workers report, so what counts as an overlap is written down once.

/** One holder's belief that it held a resource, on the machine's monotonic clock (ns). */
export interface Interval {
  /** Which worker process and which of its handles: two intervals of one owner never overlap. */
  owner: string
  resource: string
  /** When the acquire call began. */
  called: bigint
  /** When it resolved: the holder's belief starts here. */
  start: bigint
  end: bigint
  /** The fencing token, when the scenario asks for them. */
  token?: bigint
}

export interface Overlap {
  resource: string
  first: Interval
  second: Interval
  /** How long both believed they held it, in ms. */
  ms: number
}

/**
 * Every pair of intervals of one resource whose owners believed they held it
 * at the same time: for each interval, the earlier one that ends last is the
 * one it overlaps most.
 */
export function overlaps(intervals: Interval[]): Overlap[] {
  const found: Overlap[] = []
  for (const [resource, list] of byResource(intervals)) {
    let latest: Interval | null = null
    for (const interval of list) {
      if (latest !== null && interval.start < latest.end && interval.owner !== latest.owner) {
        const end = interval.end < latest.end ? interval.end : latest.end
        found.push({ resource, first: latest, second: interval, ms: Number(end - interval.start) / 1e6 })
      }
      if (latest === null || interval.end > latest.end) latest = interval
    }
  }
  return found
}

/** Fencing tokens that do not strictly increase in the order the intervals began, per resource. */
export function tokenInversions(intervals: Interval[]): { resource: string; before: Interval; after: Interval }[] {
  const found: { resource: string; before: Interval; after: Interval }[] = []
  for (const [resource, list] of byResource(intervals)) {
    const fenced = list.filter((interval) => interval.token !== undefined)
    for (let i = 1; i < fenced.length; i++) {
      if (fenced[i].token! <= fenced[i - 1].token!) found.push({ resource, before: fenced[i - 1], after: fenced[i] })
    }
  }
  return found
}

function byResource(intervals: Interval[]): Map<string, Interval[]> {
  const map = new Map<string, Interval[]>()
  for (const interval of intervals) {
    const list = map.get(interval.resource) ?? []
    list.push(interval)
    map.set(interval.resource, list)
  }
  for (const list of map.values()) list.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
  return map
}

/** One acquire call as a worker timed it, on the monotonic clock (ns). */
export interface Call {
  worker: string
  /** Its `wait_ms`, when it waited. */
  waitMs: number | null
  called: bigint
  /** `null`: still pending when its worker gave up on it. */
  settled: bigint | null
  /** 'acquired', 'null' or the error code it rejected with. */
  outcome: string
  /** When its signal was aborted, if before it settled. */
  aborted?: bigint
  /** When close() of its lock was called, if before it settled. */
  closing?: bigint
}

/** One close() as a worker timed it. */
export interface Close {
  worker: string
  called: bigint
  /** `null`: still pending when its worker gave up on it. */
  settled: bigint | null
}

/** A call or close() that took longer than its bound: by how much (ms), or `null` when it never settled. */
export interface Late<T> {
  of: T
  overMs: number | null
}

const ms = (from: bigint, to: bigint) => Number(to - from) / 1e6

/** Waiting calls that settled more than `extraMs` after their `wait_ms` ran out, or never. */
export function waitOverruns(calls: Call[], extraMs: number): Late<Call>[] {
  return calls
    .filter((call) => call.waitMs !== null)
    .map((call) => ({ of: call, overMs: call.settled === null ? null : ms(call.called, call.settled) - call.waitMs! - extraMs }))
    .filter((late) => late.overMs === null || late.overMs > 0)
}

/** Calls that never settled, waiting or not. */
export function neverSettled(calls: Call[]): Call[] {
  return calls.filter((call) => call.settled === null)
}

/** Calls aborted before they settled that settled more than `boundMs` after the abort. */
export function abortLags(calls: Call[], boundMs: number): Late<Call>[] {
  return calls
    .filter((call) => call.aborted !== undefined && call.settled !== null)
    .map((call) => ({ of: call, overMs: ms(call.aborted!, call.settled!) - boundMs }))
    .filter((late) => late.overMs! > 0)
}

/** Calls aborted before they settled that did not reject with ABORT_ERR. */
export function abortsNotRejected(calls: Call[]): Call[] {
  return calls.filter((call) => call.aborted !== undefined && call.settled !== null && call.outcome !== 'ABORT_ERR')
}

/** Calls in flight when their lock's close() was called that settled more than `boundMs` after it. */
export function closingLags(calls: Call[], boundMs: number): Late<Call>[] {
  return calls
    .filter((call) => call.closing !== undefined && call.settled !== null)
    .map((call) => ({ of: call, overMs: ms(call.closing!, call.settled!) - boundMs }))
    .filter((late) => late.overMs! > 0)
}

/** close() calls that took longer than `boundMs`, or never settled. */
export function closeLags(closes: Close[], boundMs: number): Late<Close>[] {
  return closes
    .map((close) => ({ of: close, overMs: close.settled === null ? null : ms(close.called, close.settled) - boundMs }))
    .filter((late) => late.overMs === null || late.overMs > 0)
}

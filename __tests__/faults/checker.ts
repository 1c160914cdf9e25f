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

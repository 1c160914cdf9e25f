// The fault suite (`npm run test:faults`): worker processes take locks on a
// few resources while a nemesis pauses, kills, restarts and slows real
// redis-server nodes; the checker then looks for two owners believing they
// held one resource at once, for keys left without a TTL or left at all,
// and for fencing tokens out of order. In the waiting scenarios every
// acquire waits (`wait_ms`) and some are aborted, and the checker also
// looks for an acquire that outlived its wait, or its abort, by more than
// the documented bound, a close() slower than its bound, and subscriptions
// or connections left behind. Every scenario runs on 3 and 5 nodes. A
// scenario that must be safe fails on any overlap; the control (quarantine
// off) fails when it shows none, and each waiting scenario carries the
// controls of its own checks (a process that never closes its lock must be
// found, and each bound cut to nothing must be broken), since a check that
// cannot fail proves nothing.
//
// Usage: npm run test:faults [-- --ci] [--only <scenario name part>] [--sizes 3,5]
//   --ci: shorter scenarios (the version .ci/run runs); without it the
//   results are also written to __tests__/faults/RESULTS.md.

import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

import { DistributedLock } from '../..'
import { Cluster, waitFor, type RedisNode } from '../helpers/redis'
import {
  abortLags,
  abortsNotRejected,
  closeLags,
  closingLags,
  neverSettled,
  overlaps,
  tokenInversions,
  waitOverruns,
  type Call,
  type Close,
  type Interval,
} from './checker'
import { channelsOf, clientsOf, probe, socketsOf, subscribing } from './connections'
import { COMMAND_TIMEOUT_MS, SCENARIOS, TTL_MS, sleep, type Faults, type Scenario } from './scenarios'
import type { WorkerConfig, WorkerLine } from './worker'

const { values: flags } = parseArgs({
  options: {
    ci: { type: 'boolean', default: false },
    only: { type: 'string' },
    sizes: { type: 'string', default: '3,5' },
  },
})
const SECONDS = flags.ci ? 6 : 20
// The control fails the run when it shows no overlap, and in 6 s it may see
// only a couple of crash cycles; longer keeps that from failing by chance.
const CONTROL_SECONDS = flags.ci ? 15 : SECONDS
const RESOURCES = ['r0', 'r1', 'r2', 'r3']
const MODES: WorkerConfig['mode'][] = ['normal', 'normal', 'overstay', 'crash']
const PREFIX = 'redlock:'
/** The resource the control of the subscription checks holds with one lock and waits for with another. */
const UNCLOSED_RESOURCE = 'unclosed'
/**
 * In the waiting scenarios every acquire waits 50 ms to 1.5 s (past a TTL:
 * some waits run out, some outlast a pause, some are woken by a release),
 * and a quarter of them get an abort at a random moment.
 */
const WAIT: NonNullable<WorkerConfig['wait']> = { minMs: 50, maxMs: 1_500, abortShare: 0.25 }
/** In the waiting scenarios the second worker closes its lock and makes a new one this often, calls in flight. */
const RENEW_EVERY_MS = 1_500
/**
 * What a measured span may hold besides the library's bound: the worker's
 * own event-loop turns between the result and the code that reads the
 * clock, and the scheduling of its process on a shared 2-core machine,
 * where five workers, the nodes and this runner run besides whatever else:
 * there a worker's event loop was seen late by 15-30 ms at the 99th
 * percentile and by 360 ms at the worst, and a bare abort() with a no-op
 * listener took up to 7 ms. Smaller than a command timeout, so a bound
 * overrun by one more command timeout shows; a stall longer than the
 * margin that lands on a call near its bound fails the run, and the
 * console line tells how late the workers' event loops ran.
 */
const MARGIN_MS = 100
/** A waiting acquire settles within `wait_ms` plus one command timeout (README, index.d.ts). */
const WAIT_EXTRA_MS = COMMAND_TIMEOUT_MS + MARGIN_MS
/** close() resolves within the command timeout plus a few ms (README, index.d.ts); calls in flight settle with it. */
const CLOSE_BOUND_MS = COMMAND_TIMEOUT_MS + MARGIN_MS
/**
 * An aborted acquire rejects at once (README): the abort event and the
 * rejection share one turn of the worker's event loop, so its bound is the
 * margin alone. (The bounded-waits spec holds one quiet process to 50 ms;
 * here one abort took 61 ms to settle at a load of 5-7 on 2 cores, where the
 * library's abort() alone measures under 4 ms.)
 */
const ABORT_BOUND_MS = MARGIN_MS
/**
 * How long the nodes get to show what every settled wait and every closed
 * lock imply: an UNSUBSCRIBE, or a dropped connection, reaching a node that
 * was paused or restarted a moment ago, and the control's subscription
 * opened again after a restart (its backoff grows to 2 s).
 */
const SETTLE_MS = 3_000
/** A worker's own give-up on its calls after its deadline, with room to say so. */
const WORKERS_SETTLE_MS = WAIT.maxMs + 2 * TTL_MS + 6 * COMMAND_TIMEOUT_MS + 1_000 + 5_000

interface Outcome {
  size: number
  scenario: Scenario
  acquisitions: number
  perSecond: number
  overlaps: number
  worstOverlapMs: number
  tokenInversions: number
  /** How many intervals carried a fencing token. */
  tokens: number
  grantsInNoGrantWindows: number
  firstGrantAfterWindowMs: number | null
  /** Calls that waited, and of them those aborted before they settled. */
  waits: number
  aborted: number
  /** The latest a settled waiting call came, past its wait_ms (ms). */
  worstPastWaitMs: number | null
  /** The latest an aborted call settled after its abort (ms). */
  worstAfterAbortMs: number | null
  closes: number
  /** The slowest close() (ms); null when one never settled. */
  worstCloseMs: number | null
  /** Subscribers of the prefix's channels left once every wait settled, and subscription connections of closed locks. */
  channelsLeft: number
  subscriptionsLeft: number
  keysWithoutTtl: number
  keysLeft: number
  errors: Map<string, number>
  /** The worst event-loop delay a worker saw, and the worst 99th percentile of a worker's (ms). */
  worstLagMs: number
  worstLagP99Ms: number
  problems: string[]
}

/** One worker process and how far it got through the end of a scenario. */
class Worker {
  readonly child: ChildProcess
  settled = false
  closed = false
  exited = false

  constructor(readonly config: WorkerConfig, onLine: (line: WorkerLine, worker: Worker) => void) {
    this.child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'worker.ts'), JSON.stringify(config)], {
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    // A worker that exited no longer reads what it is told.
    this.child.stdin!.on('error', () => {})
    let buffer = ''
    this.child.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString()
      const complete = buffer.split('\n')
      buffer = complete.pop()!
      for (const line of complete) {
        if (!line) continue
        const parsed = JSON.parse(line) as WorkerLine
        if (parsed.kind === 'settled') this.settled = true
        if (parsed.kind === 'closed') this.closed = true
        onLine(parsed, this)
      }
    })
    this.child.on('exit', () => (this.exited = true))
  }

  get id(): string {
    return this.config.id
  }

  get pid(): number {
    return this.child.pid!
  }

  tell(word: string): void {
    this.child.stdin!.write(`${word}\n`)
  }
}

/** Every lock key on the nodes that answer, and how many of them have no TTL. */
async function lockKeys(nodes: RedisNode[], skip: Set<RedisNode>): Promise<{ keys: number; withoutTtl: number }> {
  let keys = 0
  let withoutTtl = 0
  for (const node of nodes.filter((n) => !skip.has(n))) {
    // Paused or restarting meanwhile: probed again later.
    const found = await probe(node, async (client) => {
      // The fencing counters have no TTL on purpose.
      const found = (await client.keys(`${PREFIX}*`)).filter((key) => !key.startsWith(`${PREFIX}fence:`))
      let without = 0
      for (const key of found) if ((await client.pttl(key)) === -1) without++
      return { keys: found.length, without }
    })
    keys += found?.keys ?? 0
    withoutTtl += found?.without ?? 0
  }
  return { keys, withoutTtl }
}

/** Waits for `check` until `timeoutMs`; whether it came true. */
const cameTrue = (what: string, check: () => boolean | Promise<boolean>, timeoutMs: number) =>
  waitFor(what, check, timeoutMs).then(() => true, () => false)

const worst = (values: number[]) => (values.length === 0 ? null : Math.max(...values))
const spanMs = (from: bigint, to: bigint) => Number(to - from) / 1e6

async function runScenario(cluster: Cluster, scenario: Scenario): Promise<Outcome> {
  const nodes = cluster.nodes
  const quarantine = scenario.quarantine ?? true
  const waiting = scenario.waiting ?? false
  // Every node up, empty, and out of quarantine before the scenario starts,
  // as a worker starting now sees it: each probe is a new instance, which
  // reads the nodes' uptimes when it connects, as a new worker does.
  await cluster.flush()
  await waitFor('every node to count for a new instance', async () => {
    const probe = new DistributedLock({ redis_nodes: cluster.addresses, lock_ttl_ms: TTL_MS })
    try {
      return (await probe.health()).counted === nodes.length
    } finally {
      await probe.close()
    }
  }, 10_000)

  const intervals: Interval[] = []
  const calls: Call[] = []
  const closes: Close[] = []
  const errors = new Map<string, number>()
  let worstLagMs = 0
  let worstLagP99Ms = 0
  const onLine = (line: WorkerLine, worker: Worker) => {
    switch (line.kind) {
      case 'interval':
        intervals.push({
          owner: line.owner,
          resource: line.resource,
          called: BigInt(line.called),
          start: BigInt(line.start),
          end: BigInt(line.end),
          ...(line.token === undefined ? {} : { token: BigInt(line.token) }),
        })
        break
      case 'error':
        errors.set(line.code, (errors.get(line.code) ?? 0) + 1)
        break
      case 'call':
        calls.push({
          worker: worker.id,
          waitMs: line.waitMs,
          called: BigInt(line.called),
          settled: line.settled === null ? null : BigInt(line.settled),
          outcome: line.outcome,
          ...(line.aborted === undefined ? {} : { aborted: BigInt(line.aborted) }),
          ...(line.closing === undefined ? {} : { closing: BigInt(line.closing) }),
        })
        break
      case 'close':
        closes.push({ worker: worker.id, called: BigInt(line.called), settled: line.settled === null ? null : BigInt(line.settled) })
        break
      case 'lag':
        worstLagMs = Math.max(worstLagMs, line.maxMs)
        worstLagP99Ms = Math.max(worstLagP99Ms, line.p99Ms)
        break
    }
  }

  const started = Date.now()
  const seconds = scenario.control ? CONTROL_SECONDS : SECONDS
  const until = started + seconds * 1_000
  const faults: Faults = { faulted: new Set(), noGrant: [] }
  const workers: Worker[] = []
  const spawnWorker = (mode: WorkerConfig['mode'], extra: Partial<WorkerConfig> = {}) => {
    const worker = new Worker({
      id: `w${workers.length}`,
      addresses: cluster.addresses,
      resources: mode === 'unclosed' ? [UNCLOSED_RESOURCE] : RESOURCES,
      ttlMs: TTL_MS,
      commandTimeoutMs: COMMAND_TIMEOUT_MS,
      until,
      mode,
      quarantine,
      fencing: scenario.fencing ?? false,
      loops: mode === 'normal' ? 3 : 1,
      ...extra,
    }, onLine)
    workers.push(worker)
    worker.child.on('exit', () => {
      // A crashed worker is replaced, so the load stays the same.
      if (mode === 'crash' && Date.now() < until - 500) spawnWorker(mode, extra)
    })
  }
  MODES.forEach((mode, i) => spawnWorker(mode, waiting ? { wait: WAIT, ...(i === 1 ? { renewEveryMs: RENEW_EVERY_MS } : {}) } : {}))
  if (waiting) spawnWorker('unclosed')
  const control = workers.find((worker) => worker.config.mode === 'unclosed')

  let keysWithoutTtl = 0
  const leakProbe = (async () => {
    while (Date.now() < until) {
      await sleep(1_000)
      keysWithoutTtl += (await lockKeys(nodes, faults.faulted)).withoutTtl
    }
  })()
  await scenario.nemesis(nodes, faults, until)
  await leakProbe

  const problems: string[] = []
  const live = () => workers.filter((worker) => !worker.exited)
  const kill = (worker: Worker, why: string) => {
    problems.push(`${worker.id} ${why}`)
    worker.child.kill('SIGKILL')
  }

  // Every call of every worker settled (or was given up on by its worker),
  // every lock still open: no channel of the prefix may have a subscriber
  // but the control's waiter.
  if (!(await cameTrue('every worker to settle', () => live().every((worker) => worker.settled), WORKERS_SETTLE_MS))) {
    for (const worker of live()) if (!worker.settled) kill(worker, 'never said its calls had settled')
  }
  const controlChannel = `${PREFIX}${UNCLOSED_RESOURCE}`
  let channels: (Map<string, number> | null)[] = []
  const leftOver = (found: Map<string, number>) => [...found].filter(([channel]) => channel !== controlChannel)
  await cameTrue('no channel but the control\'s to have a subscriber', async () => {
    channels = await Promise.all(nodes.map((node) => channelsOf(node, `${PREFIX}*`)))
    return channels.every((found) => found !== null && leftOver(found).length === 0 && (!control || (found.get(controlChannel) ?? 0) > 0))
  }, SETTLE_MS)
  const channelsLeft = channels.reduce((sum, found) => sum + leftOver(found ?? new Map()).reduce((n, [, count]) => n + count, 0), 0)
  if (channels.some((found) => found === null)) problems.push('a node did not answer PUBSUB CHANNELS after the scenario')
  if (channelsLeft > 0) {
    const named = [...new Set(channels.flatMap((found) => leftOver(found ?? new Map()).map(([channel]) => channel)))]
    problems.push(`${channelsLeft} subscriptions left on channels ${named.join(', ')} once every wait had settled`)
  }
  if (control && channels.some((found) => found !== null && !found.has(controlChannel))) {
    problems.push('the control\'s open wait had no subscription on some node: the channel check could not have failed')
  }

  // Every worker closes its lock; then none of them may hold a connection
  // to a node, and no node may list a subscription connection of theirs.
  for (const worker of live()) worker.tell('close')
  if (!(await cameTrue('every worker to close its lock', () => live().every((worker) => worker.closed), 5_000 + SETTLE_MS))) {
    for (const worker of live()) if (!worker.closed) kill(worker, 'never said its lock had closed')
  }
  const ports = new Set(nodes.map((node) => node.port))
  const closedWorkers = live().filter((worker) => worker.closed && worker !== control)
  await cameTrue('closed locks to let go of their connections', () =>
    closedWorkers.every((worker) => socketsOf(worker.pid, ports).length === 0), SETTLE_MS)
  const held = new Map(live().map((worker) => [worker, socketsOf(worker.pid, ports)]))
  const connectionsLeft = closedWorkers.reduce((sum, worker) => sum + held.get(worker)!.length, 0)
  if (connectionsLeft > 0) problems.push(`${connectionsLeft} connections to the nodes still open after close()`)
  let subscriptionsLeft = 0
  for (const node of nodes) {
    const clients = await clientsOf(node)
    if (clients === null) {
      problems.push(`node ${node.port} did not answer CLIENT LIST after the scenario`)
      continue
    }
    const subscriptionsOf = (worker: Worker) => {
      const mine = new Set(held.get(worker)!.filter((socket) => socket.remotePort === node.port).map((socket) => socket.localPort))
      return clients.filter((client) => mine.has(client.port) && subscribing(client)).length
    }
    for (const worker of closedWorkers) subscriptionsLeft += subscriptionsOf(worker)
    if (control && subscriptionsOf(control) === 0) {
      problems.push(`node ${node.port} listed no subscription connection of the unclosed control: the connection check could not have failed`)
    }
  }
  if (subscriptionsLeft > 0) problems.push(`${subscriptionsLeft} subscription connections of closed locks left on the nodes`)

  // Nothing but stdin kept a worker alive: once it ends, each must exit by itself.
  for (const worker of live()) worker.child.stdin!.end()
  if (!(await cameTrue('every worker to exit', () => live().length === 0, 5_000))) {
    for (const worker of live()) kill(worker, 'did not exit once its lock was closed')
  }
  await cameTrue('killed workers to be gone', () => live().length === 0, 5_000)

  // Every key must expire within the longest TTL once its owners are gone.
  await sleep(TTL_MS + 200)
  const after = await lockKeys(nodes, new Set())
  keysWithoutTtl += after.withoutTtl

  const found = overlaps(intervals)
  const inversions = tokenInversions(intervals)
  // An acquire begun while the majority was paused must not succeed before
  // it comes back. (When it resolved says less: a worker's event loop may
  // deliver a grant won just before the pause some milliseconds late.)
  const inWindows = intervals.filter((i) => faults.noGrant.some((w) => i.called >= w.from && i.start <= w.to))
  const afterWindow = faults.noGrant.length === 0
    ? null
    : intervals
      .map((i) => i.start)
      .filter((start) => start > faults.noGrant[0].to)
      .reduce<bigint | null>((first, start) => (first === null || start < first ? start : first), null)
  const waited = calls.filter((call) => call.waitMs !== null && call.settled !== null)
  const aborted = calls.filter((call) => call.aborted !== undefined && call.settled !== null)
  const outcome: Outcome = {
    size: nodes.length,
    scenario,
    acquisitions: intervals.length,
    perSecond: intervals.length / seconds,
    overlaps: found.length,
    worstOverlapMs: Math.max(0, ...found.map((o) => o.ms)),
    tokenInversions: inversions.length,
    tokens: intervals.filter((i) => i.token !== undefined).length,
    grantsInNoGrantWindows: inWindows.length,
    firstGrantAfterWindowMs: afterWindow === null ? null : Number(afterWindow - faults.noGrant[0].to) / 1e6,
    waits: calls.filter((call) => call.waitMs !== null).length,
    aborted: aborted.length,
    worstPastWaitMs: worst(waited.map((call) => spanMs(call.called, call.settled!) - call.waitMs!)),
    worstAfterAbortMs: worst(aborted.map((call) => spanMs(call.aborted!, call.settled!))),
    closes: closes.length,
    worstCloseMs: closes.some((close) => close.settled === null) ? null : worst(closes.map((close) => spanMs(close.called, close.settled!))),
    channelsLeft,
    subscriptionsLeft,
    keysWithoutTtl,
    keysLeft: after.keys,
    errors,
    worstLagMs,
    worstLagP99Ms,
    problems,
  }
  if (scenario.control) {
    if (found.length === 0) problems.push('the control showed no overlap: the check could not have failed')
  } else if (found.length > 0) {
    const o = found[0]
    problems.push(`${found.length} overlaps, e.g. ${o.resource}: ${o.first.owner} and ${o.second.owner} for ${o.ms.toFixed(1)} ms`)
  }
  if (inversions.length > 0) problems.push(`${inversions.length} fencing tokens out of order`)
  if (inWindows.length > 0) problems.push(`${inWindows.length} acquires begun while a majority was paused succeeded before it came back`)
  if (faults.noGrant.length > 0 && afterWindow === null) problems.push('no lock granted after the majority came back')
  problems.push(...timingProblems(calls, closes, waiting))
  if (keysWithoutTtl > 0) problems.push(`${keysWithoutTtl} lock keys without a TTL`)
  if (after.keys > 0) problems.push(`${after.keys} lock keys left after the longest TTL`)
  if (intervals.length === 0) problems.push('no lock was acquired at all')
  for (const code of ['UNHANDLED_REJECTION', 'WORKER_CRASH', 'ERR_INVALID_ARG', 'ERR_INTERNAL']) {
    if (errors.has(code)) problems.push(`${errors.get(code)} errors ${code}`)
  }
  return outcome
}

/** What the timings of the calls and closes show against the documented bounds, and the controls of those checks. */
function timingProblems(calls: Call[], closes: Close[], waiting: boolean): string[] {
  const problems: string[] = []
  const late = (what: string, found: { overMs: number | null }[], boundMs: string) => {
    if (found.length === 0) return
    const settled = found.filter((l) => l.overMs !== null).map((l) => l.overMs!)
    const pending = found.length - settled.length
    const worstOver = worst(settled)
    problems.push(`${found.length} ${what} past ${boundMs}${worstOver === null ? '' : ` (worst by ${worstOver.toFixed(0)} ms)`}${pending ? `, ${pending} never settled` : ''}`)
  }
  late('waiting acquires settled', waitOverruns(calls, WAIT_EXTRA_MS), `wait_ms + ${WAIT_EXTRA_MS} ms`)
  const hung = neverSettled(calls.filter((call) => call.waitMs === null))
  if (hung.length > 0) problems.push(`${hung.length} acquires never settled`)
  late('aborted acquires settled', abortLags(calls, ABORT_BOUND_MS), `${ABORT_BOUND_MS} ms after the abort`)
  const notRejected = abortsNotRejected(calls)
  if (notRejected.length > 0) problems.push(`${notRejected.length} acquires aborted before they settled did not reject with ABORT_ERR (${notRejected[0].outcome})`)
  late('acquires in flight at close() settled', closingLags(calls, CLOSE_BOUND_MS), `${CLOSE_BOUND_MS} ms after it`)
  const closedUnasked = calls.filter((call) => call.outcome === 'ERR_LOCK_CLOSED' && call.closing === undefined)
  if (closedUnasked.length > 0) problems.push(`${closedUnasked.length} acquires rejected with ERR_LOCK_CLOSED though their lock was not closed`)
  late('close() calls took', closeLags(closes, CLOSE_BOUND_MS), `${CLOSE_BOUND_MS} ms`)
  // Only a lock, an abort or a close ends a wait before its wait_ms: null
  // and ERR_QUORUM_UNAVAILABLE come once it ran out, no sooner.
  const ranOut = calls.filter((call) =>
    call.waitMs !== null && call.settled !== null && !['acquired', 'ABORT_ERR', 'ERR_LOCK_CLOSED'].includes(call.outcome))
  const early = ranOut.filter((call) => spanMs(call.called, call.settled!) < call.waitMs!)
  if (early.length > 0) problems.push(`${early.length} waiting acquires gave up before wait_ms (${early[0].outcome})`)
  if (!waiting) return problems
  // The controls: each bound cut to nothing must be broken by every call it
  // applies to, or the check is not looking at what it claims to.
  const aborted = calls.filter((call) => call.aborted !== undefined && call.settled !== null)
  if (ranOut.length === 0) problems.push('no wait ran out: the wait bound was not put to the test')
  else if (waitOverruns(ranOut, 0).length < ranOut.length) problems.push('with the bound cut to wait_ms, some waits that ran out were not reported')
  if (aborted.length === 0) problems.push('no wait was aborted: the abort bound was not put to the test')
  else if (abortLags(aborted, 0).length < aborted.length) problems.push('with the abort bound cut to 0, some aborted calls were not reported')
  if (closes.length === 0) problems.push('no close() was timed')
  else if (closeLags(closes, 0).length < closes.length) problems.push('with the close() bound cut to 0, some close() calls were not reported')
  return problems
}

const fixed = (value: number | null, digits = 0) => (value === null ? 'never' : value.toFixed(digits))

function table(outcomes: Outcome[], baseline: Map<string, number>): string {
  const rows = outcomes.map((o) => {
    const base = baseline.get(`${o.size}:${o.scenario.waiting ?? false}`) ?? o.perSecond
    const availability = (o.perSecond / base) * 100
    const errors = [...o.errors].map(([code, n]) => `${code} ${n}`).join(', ') || 'none'
    const verdict = o.problems.length === 0 ? 'pass' : `FAIL: ${o.problems.join('; ')}`
    const extra = [
      o.firstGrantAfterWindowMs === null ? '' : ` (no acquire begun during the pause succeeded in it; the first grant ${o.firstGrantAfterWindowMs.toFixed(0)} ms after)`,
      o.tokens === 0 ? '' : ` (${o.tokens} tokens, ${o.tokenInversions} out of order)`,
    ].join('')
    const waits = o.waits === 0 ? '-' : `${o.waits} (${o.aborted})`
    const worsts = [
      o.waits === 0 ? '-' : `${o.worstPastWaitMs !== null && o.worstPastWaitMs >= 0 ? '+' : ''}${fixed(o.worstPastWaitMs)}`,
      o.aborted === 0 ? '-' : fixed(o.worstAfterAbortMs, 1),
      fixed(o.worstCloseMs),
    ].join(' / ')
    return `| ${o.size} | ${o.scenario.name} | ${o.acquisitions} | ${o.perSecond.toFixed(1)} | ${availability.toFixed(0)}% | ${o.overlaps}${o.overlaps ? ` (worst ${o.worstOverlapMs.toFixed(0)} ms)` : ''} | ${waits} | ${worsts} ms | ${o.channelsLeft} / ${o.subscriptionsLeft} | ${o.keysWithoutTtl} / ${o.keysLeft} | ${errors} | ${verdict}${extra} |`
  })
  return [
    '| nodes | scenario | acquisitions | per s | availability | overlaps | waits (aborted) | worst: past wait_ms / after abort / close() | subscriptions left: channels / connections | keys without TTL / left | errors | verdict |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
    ...rows,
  ].join('\n')
}

async function main(): Promise<void> {
  const sizes = flags.sizes.split(',').map(Number)
  const scenarios = SCENARIOS.filter((s) => flags.only === undefined || s.name.includes(flags.only))
  const outcomes: Outcome[] = []
  const baseline = new Map<string, number>()
  // The timings mean less on a machine busier than its cores: the header says how busy it was.
  const loads: number[] = []
  for (const size of sizes) {
    // Nodes without persistence: the harder case, where only the quarantine
    // protects a lock from a node that restarts.
    const cluster = await Cluster.start(size, { durable: false, args: ['--enable-debug-command', 'yes'] })
    try {
      for (const scenario of scenarios) {
        loads.push(os.loadavg()[0])
        const outcome = await runScenario(cluster, scenario)
        if (scenario.baseline) baseline.set(`${size}:${scenario.waiting ?? false}`, outcome.perSecond)
        outcomes.push(outcome)
        const timing = outcome.waits === 0 ? '' : `, worst ${fixed(outcome.worstPastWaitMs)} ms past wait_ms, ${fixed(outcome.worstAfterAbortMs, 1)} ms after an abort`
        console.log(`${size} nodes | ${scenario.name}: ${outcome.acquisitions} acquisitions, ${outcome.overlaps} overlaps${timing}, slowest close() ${fixed(outcome.worstCloseMs)} ms, workers' event loops late by up to ${outcome.worstLagMs.toFixed(0)} ms (p99 ${outcome.worstLagP99Ms.toFixed(0)} ms), ${outcome.problems.length === 0 ? 'pass' : `FAIL: ${outcome.problems.join('; ')}`}`)
      }
    } finally {
      await cluster.stop()
    }
  }
  const report = table(outcomes, baseline)
  console.log(`\n${report}\n`)
  if (!flags.ci && flags.only === undefined) {
    const header = [
      '# Fault suite results',
      '',
      `${new Date().toISOString().slice(0, 10)}, ${SECONDS} s per scenario, TTL ${TTL_MS} ms, command timeout ${COMMAND_TIMEOUT_MS} ms, ${MODES.length} worker processes`,
      `(${MODES.join(', ')}), resources ${RESOURCES.join(', ')}; in the waiting scenarios every acquire waits`,
      `${WAIT.minMs}-${WAIT.maxMs} ms, ${WAIT.abortShare * 100}% get an abort, the second worker closes its lock every ${RENEW_EVERY_MS} ms and makes a new one,`,
      'and a fifth process keeps a wait open and never closes (the control of the subscription checks). Availability: acquisitions per second',
      'against the no-fault run on as many nodes (the waiting one for the waiting scenarios). Reproduce with `npm run test:faults`.',
      '',
      `The machine: ${os.cpus().length} cores, 1-minute load average ${Math.min(...loads).toFixed(1)} to ${Math.max(...loads).toFixed(1)} at the scenarios' starts` +
        `${Math.max(...loads) > os.cpus().length ? ' (busier than its cores: the timings carry scheduling noise)' : ''}.`,
      '',
    ]
    writeFileSync(path.join(__dirname, 'RESULTS.md'), `${header.join('\n')}\n${report}\n`)
  }
  const failed = outcomes.filter((o) => o.problems.length > 0)
  if (failed.length > 0) {
    console.error(`${failed.length} of ${outcomes.length} scenarios failed`)
    process.exit(1)
  }
  console.log(`all ${outcomes.length} scenarios passed`)
}

main().catch((error: Error) => {
  console.error(error.stack ?? error.message)
  process.exit(1)
})

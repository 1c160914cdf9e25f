// The fault suite (`npm run test:faults`): worker processes take locks on a
// few resources while a nemesis pauses, kills, restarts and slows real
// redis-server nodes; the checker then looks for two owners believing they
// held one resource at once, for keys left without a TTL or left at all,
// and for fencing tokens out of order. Every scenario runs on 3 and 5
// nodes. A scenario that must be safe fails on any overlap; the control
// (quarantine off) fails when it shows none, since a check that cannot fail
// proves nothing.
//
// Usage: npm run test:faults [-- --ci] [--only <scenario name part>] [--sizes 3,5]
//   --ci: shorter scenarios (the version .ci/run runs); without it the
//   results are also written to __tests__/faults/RESULTS.md.

import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'

import Redis from 'ioredis'

import { DistributedLock } from '../..'
import { Cluster, waitFor, type RedisNode } from '../helpers/redis'
import { overlaps, tokenInversions, type Interval } from './checker'
import { SCENARIOS, TTL_MS, sleep, type Faults, type Scenario } from './scenarios'
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
  keysWithoutTtl: number
  keysLeft: number
  errors: Map<string, number>
  problems: string[]
}

function startWorker(config: WorkerConfig, lines: WorkerLine[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'worker.ts'), JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let buffer = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    const complete = buffer.split('\n')
    buffer = complete.pop()!
    for (const line of complete) if (line) lines.push(JSON.parse(line) as WorkerLine)
  })
  return child
}

/** Every lock key on the nodes that answer, and how many of them have no TTL. */
async function lockKeys(nodes: RedisNode[], skip: Set<RedisNode>): Promise<{ keys: number; withoutTtl: number }> {
  let keys = 0
  let withoutTtl = 0
  for (const node of nodes.filter((n) => !skip.has(n))) {
    const client = new Redis({ host: '127.0.0.1', port: node.port, commandTimeout: 500, maxRetriesPerRequest: 0, lazyConnect: true })
    // A node restarting meanwhile refuses the connection; the probe says so by rejecting.
    client.on('error', () => {})
    try {
      await client.connect()
      // The fencing counters have no TTL on purpose.
      const found = (await client.keys('redlock:*')).filter((key) => !key.startsWith('redlock:fence:'))
      keys += found.length
      for (const key of found) if ((await client.pttl(key)) === -1) withoutTtl++
    } catch {
      // paused or restarting meanwhile: probed again later
    } finally {
      client.disconnect()
    }
  }
  return { keys, withoutTtl }
}

async function runScenario(cluster: Cluster, scenario: Scenario): Promise<Outcome> {
  const nodes = cluster.nodes
  const quarantine = scenario.quarantine ?? true
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

  const lines: WorkerLine[] = []
  const started = Date.now()
  const seconds = scenario.control ? CONTROL_SECONDS : SECONDS
  const until = started + seconds * 1_000
  const faults: Faults = { faulted: new Set(), noGrant: [] }
  const workers = new Set<ChildProcess>()
  let spawned = 0
  const spawnWorker = (mode: WorkerConfig['mode']) => {
    const child = startWorker({
      id: `w${spawned++}`,
      addresses: cluster.addresses,
      resources: RESOURCES,
      ttlMs: TTL_MS,
      until,
      mode,
      quarantine,
      fencing: scenario.fencing ?? false,
      loops: mode === 'normal' ? 3 : 1,
    }, lines)
    workers.add(child)
    child.on('exit', () => {
      workers.delete(child)
      // A crashed worker is replaced, so the load stays the same.
      if (mode === 'crash' && Date.now() < until - 500) spawnWorker(mode)
    })
  }
  for (const mode of MODES) spawnWorker(mode)

  let keysWithoutTtl = 0
  const leakProbe = (async () => {
    while (Date.now() < until) {
      await sleep(1_000)
      keysWithoutTtl += (await lockKeys(nodes, faults.faulted)).withoutTtl
    }
  })()
  await scenario.nemesis(nodes, faults, until)
  await leakProbe
  await waitFor('the workers to finish', () => workers.size === 0, TTL_MS * 3 + 10_000)
  // Every key must expire within the longest TTL once its owners are gone.
  await sleep(TTL_MS + 200)
  const after = await lockKeys(nodes, new Set())
  keysWithoutTtl += after.withoutTtl

  const intervals: Interval[] = []
  const errors = new Map<string, number>()
  for (const line of lines) {
    if (line.kind === 'interval') {
      intervals.push({
        owner: line.owner,
        resource: line.resource,
        called: BigInt(line.called),
        start: BigInt(line.start),
        end: BigInt(line.end),
        ...(line.token === undefined ? {} : { token: BigInt(line.token) }),
      })
    } else {
      errors.set(line.code, (errors.get(line.code) ?? 0) + 1)
    }
  }
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
    keysWithoutTtl,
    keysLeft: after.keys,
    errors,
    problems: [],
  }
  const problems = outcome.problems
  if (scenario.control) {
    if (found.length === 0) problems.push('the control showed no overlap: the check could not have failed')
  } else if (found.length > 0) {
    const o = found[0]
    problems.push(`${found.length} overlaps, e.g. ${o.resource}: ${o.first.owner} and ${o.second.owner} for ${o.ms.toFixed(1)} ms`)
  }
  if (inversions.length > 0) problems.push(`${inversions.length} fencing tokens out of order`)
  if (inWindows.length > 0) problems.push(`${inWindows.length} acquires begun while a majority was paused succeeded before it came back`)
  if (faults.noGrant.length > 0 && afterWindow === null) problems.push('no lock granted after the majority came back')
  if (keysWithoutTtl > 0) problems.push(`${keysWithoutTtl} lock keys without a TTL`)
  if (after.keys > 0) problems.push(`${after.keys} lock keys left after the longest TTL`)
  if (intervals.length === 0) problems.push('no lock was acquired at all')
  for (const code of ['UNHANDLED_REJECTION', 'WORKER_CRASH', 'ERR_INVALID_ARG']) {
    if (errors.has(code)) problems.push(`${errors.get(code)} errors ${code}`)
  }
  return outcome
}

function table(outcomes: Outcome[], baseline: Map<number, number>): string {
  const rows = outcomes.map((o) => {
    const availability = (o.perSecond / (baseline.get(o.size) ?? o.perSecond)) * 100
    const errors = [...o.errors].map(([code, n]) => `${code} ${n}`).join(', ') || 'none'
    const verdict = o.problems.length === 0 ? 'pass' : `FAIL: ${o.problems.join('; ')}`
    const extra = [
      o.firstGrantAfterWindowMs === null ? '' : ` (no acquire begun during the pause succeeded in it; the first grant ${o.firstGrantAfterWindowMs.toFixed(0)} ms after)`,
      o.tokens === 0 ? '' : ` (${o.tokens} tokens, ${o.tokenInversions} out of order)`,
    ].join('')
    return `| ${o.size} | ${o.scenario.name} | ${o.acquisitions} | ${o.perSecond.toFixed(1)} | ${availability.toFixed(0)}% | ${o.overlaps}${o.overlaps ? ` (worst ${o.worstOverlapMs.toFixed(0)} ms)` : ''} | ${o.keysWithoutTtl} / ${o.keysLeft} | ${errors} | ${verdict}${extra} |`
  })
  return [
    '| nodes | scenario | acquisitions | per s | availability | overlaps | keys without TTL / left | errors | verdict |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |',
    ...rows,
  ].join('\n')
}

async function main(): Promise<void> {
  const sizes = flags.sizes.split(',').map(Number)
  const scenarios = SCENARIOS.filter((s) => flags.only === undefined || s.name.includes(flags.only))
  const outcomes: Outcome[] = []
  const baseline = new Map<number, number>()
  for (const size of sizes) {
    // Nodes without persistence: the harder case, where only the quarantine
    // protects a lock from a node that restarts.
    const cluster = await Cluster.start(size, { durable: false, args: ['--enable-debug-command', 'yes'] })
    try {
      for (const scenario of scenarios) {
        const outcome = await runScenario(cluster, scenario)
        if (scenario.name === 'no faults') baseline.set(size, outcome.perSecond)
        outcomes.push(outcome)
        console.log(`${size} nodes | ${scenario.name}: ${outcome.acquisitions} acquisitions, ${outcome.overlaps} overlaps, ${outcome.problems.length === 0 ? 'pass' : `FAIL: ${outcome.problems.join('; ')}`}`)
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
      `${new Date().toISOString().slice(0, 10)}, ${SECONDS} s per scenario, TTL ${TTL_MS} ms, ${MODES.length} worker processes`,
      `(${MODES.join(', ')}), resources ${RESOURCES.join(', ')}. Availability: acquisitions per second against the`,
      'no-fault run on as many nodes. Reproduce with `npm run test:faults`.',
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

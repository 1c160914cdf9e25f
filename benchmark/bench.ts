// The benchmark: this library against the npm Redlock implementations and a
// raw ioredis baseline, on the same local redis-server nodes, in interleaved
// rounds with the order rotated. Prints a table per workload with medians
// and ratios, writes benchmark/RESULTS.md and benchmark/results.svg.
//
//   npm run bench                          full run (several minutes)
//   npm run bench -- --rounds 1 --quick    smoke run
//
// W1 latency     concurrency 1, acquire(unique key)+release pairs, in slices interleaved across the libraries
// W2 throughput  concurrency 64 on distinct keys, client CPU per pair, RSS
// W3 hand-over   8 worker processes on one key, each holding 2 ms
// W4 scale       W1 while 100,000 locks are held; memory per held lock; 5 nodes against 3
//
// W1 also runs the floor (benchmark/floor.rs): raw's algorithm in a native
// client, what the machine itself costs one quorum acquire.

import { execFileSync, fork, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

import { Cluster } from '../__tests__/helpers/redis'
import { renderChart } from './chart'
import { LABELS, NAMES, type Name } from './contenders'
import type { PairsResult, WorkloadConfig } from './workload'

type Row = Record<string, number>

const { values: options } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
})
const ROUNDS = Number(options.rounds)
const QUICK = options.quick
const PAIRS_W1 = QUICK ? 200 : 3_000
/**
 * W1 of one round runs in this many slices per library, each in a fresh
 * process, the libraries taking turns (the order rotated every slice). On a
 * shared 2-core machine a single caller's latency moves between a fast and a
 * slow spell that lasts seconds (which thread runs next to which node), and a
 * library measured in one go could sit in either: the slices make every
 * library meet the same spells, so its p50 is not decided by when it ran.
 */
const W1_SLICES = QUICK ? 1 : 5
const PAIRS_W2 = QUICK ? 500 : 20_000
const HELD = QUICK ? 2_000 : 100_000
const HANDOVER_MS = QUICK ? 1_000 : 4_000
const NAMES_RUN = (options.only ? options.only.split(',') : [...NAMES]) as Name[]

/** W1 has one more entrant than the libraries. */
type Entrant = Name | 'floor'
const ENTRANT_LABELS: Record<Entrant, string> = { ...LABELS, floor: 'floor: raw in a native client (redis crate, blocking reads)' }
/** The host's target triple: `npm run build` builds for it, and the floor's client shares those builds. */
const TARGET = /^host: (.+)$/m.exec(execFileSync('rustc', ['-vV'], { encoding: 'utf8' }))?.[1] ?? 'unknown'
const FLOOR = path.join(__dirname, '..', 'target', TARGET, 'release', 'examples', 'quorum_floor')

/** Builds the floor's client (benchmark/floor.rs). */
function buildFloor(): void {
  execFileSync('cargo', ['build', '--release', '--quiet', '--locked', '--target', TARGET, '--example', 'quorum_floor'], { stdio: 'inherit' })
}

/** `pairs` acquire+release pairs of the floor's client on the nodes at `addresses`. */
function runFloor(addresses: string[], pairs: number): PairsResult {
  const run = spawnSync(FLOOR, [addresses.join(','), String(pairs)], { encoding: 'utf8', maxBuffer: 1 << 24, timeout: 10 * 60_000 })
  if (run.status !== 0) throw new Error(`the floor's client failed: ${run.error?.message ?? run.stderr}`)
  return JSON.parse(run.stdout) as PairsResult
}

function runWorkload<T = Row>(config: WorkloadConfig): T {
  const run = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', path.join(__dirname, 'workload.ts'), JSON.stringify(config)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
    timeout: 10 * 60_000,
  })
  if (run.status !== 0) throw new Error(`${config.name} ${config.workload} failed: ${run.stderr}`)
  return JSON.parse(run.stdout.trim().split('\n').pop() ?? '{}') as T
}

/** One round of W1: every entrant's slices, taking turns; per entrant the pairs/s and percentiles over all its slices. */
function latencyRound(order: Entrant[], config: (name: Name) => WorkloadConfig): Map<Entrant, Row> {
  const slices = new Map<Entrant, PairsResult[]>()
  const pairs = PAIRS_W1 / W1_SLICES
  for (let slice = 0; slice < W1_SLICES; slice++) {
    for (let i = 0; i < order.length; i++) {
      const name = order[(i + slice) % order.length]
      const result = name === 'floor' ? runFloor(config('raw').addresses, pairs) : runWorkload<PairsResult>({ ...config(name), workload: 'latency', pairs })
      slices.set(name, [...(slices.get(name) ?? []), result])
    }
  }
  const rows = new Map<Entrant, Row>()
  for (const [name, results] of slices) {
    const latencies = results.flatMap((result) => result.latenciesUs).sort((a, b) => a - b)
    const seconds = results.reduce((sum, result) => sum + result.seconds, 0)
    rows.set(name, {
      pairsPerSecond: latencies.length / seconds,
      p50Us: latencies[Math.floor(latencies.length * 0.5)],
      p99Us: latencies[Math.floor(latencies.length * 0.99)],
    })
  }
  return rows
}

async function handover(name: Name, addresses: string[], round: number): Promise<Row> {
  const key = `bench:handover:${name}:${round}`
  const workers = Array.from({ length: 8 }, (_, id) =>
    fork(path.join(__dirname, 'handover-worker.ts'), [JSON.stringify({ name, addresses, key, holdMs: 2, id })], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    }),
  )
  const events: { type: string; id: number; at: bigint }[] = []
  let ready = 0
  await new Promise<void>((resolve) => {
    for (const worker of workers) {
      worker.on('message', (message: { type: string; id: number; at?: string }) => {
        if (message.type === 'ready') {
          if (++ready === workers.length) resolve()
          return
        }
        events.push({ type: message.type, id: message.id, at: BigInt(message.at ?? '0') })
        if (message.type === 'acquired') for (const w of workers) if (w.connected) w.send(message)
      })
    }
  })
  const started = process.hrtime.bigint()
  await new Promise((resolve) => setTimeout(resolve, HANDOVER_MS))
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  await Promise.all(workers.map((worker) => new Promise<void>((resolve) => {
    worker.once('exit', () => resolve())
    if (worker.connected) worker.send({ type: 'stop' })
    setTimeout(() => worker.kill('SIGKILL'), 5_000).unref()
  })))
  events.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0))
  const gaps: number[] = []
  let lastRelease: { id: number; at: bigint } | null = null
  for (const event of events) {
    if (event.type === 'released') lastRelease = event
    else if (lastRelease && event.id !== lastRelease.id) {
      gaps.push(Number(event.at - lastRelease.at) / 1e6)
      lastRelease = null
    }
  }
  gaps.sort((a, b) => a - b)
  const acquisitions = events.filter((e) => e.type === 'acquired' && e.at >= started).length
  return {
    sectionsPerSecond: acquisitions / seconds,
    handoverP50Ms: gaps[Math.floor(gaps.length * 0.5)] ?? Number.NaN,
    handoverP99Ms: gaps[Math.floor(gaps.length * 0.99)] ?? Number.NaN,
    handovers: gaps.length,
  }
}

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b)
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor(sorted.length / 2)]
}

function format(value: number, digits = 0): string {
  return Number.isNaN(value) ? 'n/a' : value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

interface Column {
  title: string
  metric: string
  digits?: number
  /** Show the spread of the rounds next to the median. */
  spread?: boolean
}

function table(title: string, results: Map<Entrant, Row[]>, columns: Column[], ratioMetric: string, ratioTitle: string): string {
  const lines = [`### ${title}`, '', `| library | ${columns.map((c) => c.title).join(' | ')} | ${ratioTitle} vs redlock | vs raw |`,
    `| --- | ${columns.map(() => '---:').join(' | ')} | ---: | ---: |`]
  const med = (name: Entrant, metric: string) => median((results.get(name) ?? []).map((r) => r[metric]))
  for (const name of [...NAMES_RUN, ...(results.has('floor') ? ['floor' as const] : [])]) {
    const rows = results.get(name) ?? []
    const cells = columns.map((c) => {
      const values = rows.map((r) => r[c.metric])
      const spread = c.spread && values.length > 1 ? ` (${format(Math.min(...values), c.digits)}–${format(Math.max(...values), c.digits)})` : ''
      return `${format(median(values), c.digits)}${spread}`
    })
    const ratio = (base: Name) => {
      const value = med(name, ratioMetric) / med(base, ratioMetric)
      return Number.isNaN(value) ? 'n/a' : `${format(value, 2)}x`
    }
    lines.push(`| ${ENTRANT_LABELS[name]} | ${cells.join(' | ')} | ${ratio('redlock')} | ${ratio('raw')} |`)
  }
  return lines.join('\n')
}

async function main(): Promise<void> {
  // Plain nodes without persistence, as the peers are usually measured on;
  // `ours` turns its restart quarantine off for them (see contenders.ts).
  buildFloor()
  const cluster = await Cluster.start(3, { durable: false })
  const five = await Cluster.start(5, { durable: false })
  const results = { W1: new Map<Entrant, Row[]>(), W2: new Map<Entrant, Row[]>(), W3: new Map<Entrant, Row[]>(), W4: new Map<Entrant, Row[]>() }
  const add = (map: Map<Entrant, Row[]>, name: Entrant, row: Row) => map.set(name, [...(map.get(name) ?? []), row])
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const rotated = <T>(names: T[]) => names.map((_, i) => names[(i + round) % names.length])
      const order = rotated(NAMES_RUN)
      const base = (name: Name) => ({ name, addresses: cluster.addresses, addresses5: five.addresses, held: HELD, round, workload: 'latency' as const, pairs: 0 })
      for (const [name, row] of latencyRound(rotated<Entrant>([...NAMES_RUN, 'floor']), base)) add(results.W1, name, row)
      await cluster.flush()
      for (const name of order) {
        add(results.W2, name, runWorkload({ ...base(name), workload: 'throughput', pairs: PAIRS_W2 }))
        add(results.W3, name, await handover(name, cluster.addresses, round))
        add(results.W4, name, runWorkload({ ...base(name), workload: 'scale', pairs: Math.min(PAIRS_W1, 1_000) }))
        await cluster.flush()
        await five.flush()
        process.stderr.write(`round ${round + 1}/${ROUNDS}: ${LABELS[name]} done\n`)
      }
    }
  } finally {
    await cluster.stop()
    await five.stop()
  }

  const tables = [
    table(`W1 latency: concurrency 1, ${PAIRS_W1} acquire+release pairs in ${W1_SLICES} interleaved slices`, results.W1, [
      { title: 'pairs/s', metric: 'pairsPerSecond', spread: true },
      { title: 'acquire p50 µs', metric: 'p50Us', spread: true },
      { title: 'acquire p99 µs', metric: 'p99Us' },
    ], 'p50Us', 'p50'),
    table(`W2 throughput: concurrency 64, ${PAIRS_W2} pairs on distinct keys`, results.W2, [
      { title: 'pairs/s', metric: 'pairsPerSecond', spread: true },
      { title: 'client CPU µs/pair', metric: 'cpuUsPerPair', digits: 1, spread: true },
      { title: 'RSS MiB', metric: 'rssMb' },
    ], 'pairsPerSecond', 'pairs/s'),
    table(`W3 hand-over: 8 processes on one key, 2 ms each, ${HANDOVER_MS / 1000} s per round`, results.W3, [
      { title: 'sections/s', metric: 'sectionsPerSecond', digits: 1, spread: true },
      { title: 'hand-over p50 ms', metric: 'handoverP50Ms', digits: 2, spread: true },
      { title: 'hand-over p99 ms', metric: 'handoverP99Ms', digits: 2 },
    ], 'handoverP50Ms', 'hand-over p50'),
    table(`W4 scale: W1 p50 while ${HELD} locks are held, and on 5 nodes`, results.W4, [
      { title: 'idle p50 µs', metric: 'idleP50Us' },
      { title: `p50 µs, ${HELD} held`, metric: 'loadedP50Us' },
      { title: 'held/idle', metric: 'loadedRatio', digits: 2 },
      { title: 'bytes per held lock', metric: 'bytesPerLock' },
      { title: '5 nodes p50 µs', metric: 'fiveNodesP50Us' },
      { title: '5/3 nodes', metric: 'fiveToThree', digits: 2 },
    ], 'loadedP50Us', 'held p50'),
  ]
  for (const text of tables) console.log(`\n${text}`)

  const versions = (name: string) => (JSON.parse(readFileSync(path.join(__dirname, '..', 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version
  const redisVersion = execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).split(' ')[2].replace('v=', 'Redis ')
  const machine = [
    `- date: ${new Date().toISOString()}`,
    `- machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}`,
    `- Node ${process.version}, ${redisVersion}, three local nodes (five for the 5-node column), ${ROUNDS} interleaved round(s), order rotated each round`,
    `- libraries: redlock ${versions('redlock')}, @sesamecare-oss/redlock ${versions('@sesamecare-oss/redlock')}, redlock-universal ${versions('redlock-universal')}, redis-semaphore ${versions('redis-semaphore')}, ioredis ${versions('ioredis')}`,
    `- each library runs W2 and W4 in a fresh process, and W1 in ${W1_SLICES} slices of a fresh process each, the libraries taking turns; medians over rounds, with the range of the rounds in parentheses`,
    '- W1\'s floor is `benchmark/floor.rs`: the raw baseline\'s algorithm in one native thread, blocking on the replies in node order, what the machine itself costs a quorum acquire',
    '- W3: the peers retry every 50 ms without jitter; this library waits with `wait_ms`, woken by the release',
  ]
  const svg = renderChart(NAMES_RUN.map((name) => ({
    label: LABELS[name],
    w1: median((results.W1.get(name) ?? []).map((r) => r.p50Us)),
    w2: median((results.W2.get(name) ?? []).map((r) => r.pairsPerSecond)),
    w3: median((results.W3.get(name) ?? []).map((r) => r.handoverP50Ms)),
  })))
  if (!QUICK) {
    writeFileSync(path.join(__dirname, 'results.svg'), svg)
    writeFileSync(path.join(__dirname, 'RESULTS.md'), [
      '# Benchmark results', '', 'Reproduce with `npm run bench`.', '', ...machine, '', '![W1-W3](results.svg)', '', tables.join('\n\n'), '',
    ].join('\n'))
    console.log('\nwrote benchmark/RESULTS.md and benchmark/results.svg')
  }
}

main().catch((error: Error) => {
  console.error(error.stack)
  process.exit(1)
})

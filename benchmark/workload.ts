// One workload of one library, in a process of its own so that its CPU time
// and memory are its own. Prints one JSON line with the measurements.
//
// node --import tsx benchmark/workload.ts '<json WorkloadConfig>'

import { performance } from 'node:perf_hooks'

import { FACTORIES, type Contender, type Name } from './contenders'

export interface WorkloadConfig {
  name: Name
  workload: 'latency' | 'throughput' | 'scale'
  addresses: string[]
  /** Five nodes, for the scale workload's comparison with three. */
  addresses5: string[]
  pairs: number
  held: number
  round: number
}

export interface PairsResult {
  pairsPerSecond: number
  p50Us: number
  p99Us: number
  seconds: number
  /** Every acquire's latency, in µs, sorted. */
  latenciesUs: number[]
}

const TTL_MS = 60_000

async function pairs(contender: Contender, prefix: string, count: number, concurrency: number): Promise<PairsResult> {
  const latencies = new Float64Array(count)
  let next = 0
  const worker = async () => {
    for (let i = next++; i < count; i = next++) {
      const started = performance.now()
      const release = await contender.acquire(`${prefix}:${i}`, TTL_MS)
      latencies[i] = performance.now() - started
      if (!release) throw new Error(`${prefix}:${i} was not acquired`)
      await release()
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, worker))
  const seconds = (performance.now() - started) / 1000
  latencies.sort()
  return {
    pairsPerSecond: count / seconds,
    p50Us: latencies[Math.floor(count * 0.5)] * 1000,
    p99Us: latencies[Math.floor(count * 0.99)] * 1000,
    seconds,
    latenciesUs: Array.from(latencies, (ms) => ms * 1000),
  }
}

function rssAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
  return process.memoryUsage().rss
}

async function run(config: WorkloadConfig): Promise<Record<string, number | number[]>> {
  const retry = { retries: 0, delayMs: 50 }
  const contender = FACTORIES[config.name](config.addresses, retry)
  const prefix = `bench:${config.name}:${config.round}:${config.workload}`
  try {
    await pairs(contender, `${prefix}:warm`, 200, 8)
    if (config.workload === 'latency') {
      return { ...(await pairs(contender, prefix, config.pairs, 1)) }
    }
    if (config.workload === 'throughput') {
      const cpu = process.cpuUsage()
      const { latenciesUs: _, ...result } = await pairs(contender, prefix, config.pairs, 64)
      const used = process.cpuUsage(cpu)
      return { ...result, cpuUsPerPair: (used.user + used.system) / config.pairs, rssMb: process.memoryUsage().rss / 2 ** 20 }
    }
    const idle = await pairs(contender, `${prefix}:idle`, config.pairs, 1)
    const before = rssAfterGc()
    const held: unknown[] = []
    let next = 0
    await Promise.all(Array.from({ length: 64 }, async () => {
      for (let i = next++; i < config.held; i = next++) {
        const release = await contender.acquire(`${prefix}:held:${i}`, 600_000)
        if (!release) throw new Error('not acquired while filling')
        held.push(release)
      }
    }))
    const bytesPerLock = (rssAfterGc() - before) / config.held
    const loaded = await pairs(contender, `${prefix}:loaded`, config.pairs, 1)
    await contender.close()
    const five = FACTORIES[config.name](config.addresses5, retry)
    await pairs(five, `${prefix}:warm5`, 200, 8)
    const fiveNodes = await pairs(five, `${prefix}:five`, config.pairs, 1)
    await five.close()
    return {
      idleP50Us: idle.p50Us,
      loadedP50Us: loaded.p50Us,
      loadedRatio: loaded.p50Us / idle.p50Us,
      bytesPerLock,
      heldLocks: held.length,
      fiveNodesP50Us: fiveNodes.p50Us,
      fiveToThree: fiveNodes.p50Us / idle.p50Us,
    }
  } finally {
    await contender.close().catch(() => undefined)
  }
}

run(JSON.parse(process.argv[2]) as WorkloadConfig).then(
  (result) => {
    console.log(JSON.stringify(result))
    process.exit(0)
  },
  (error: Error) => {
    console.error(error.stack)
    process.exit(1)
  },
)

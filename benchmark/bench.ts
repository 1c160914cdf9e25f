// Acquire+release throughput and acquire latency of this library next to npm
// `redlock` + `ioredis`, against the same three local redis-server nodes, in
// interleaved rounds. Usage: npm run bench [-- --rounds 3 --pairs 5000]

import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'

import Redis from 'ioredis'
import Redlock from 'redlock'

import { DistributedLock } from '..'
import { Cluster } from '../__tests__/helpers/redis'

interface Contender {
  name: string
  /** Acquires `key` and returns its release. */
  acquire(key: string): Promise<() => Promise<unknown>>
  close(): Promise<void>
}

const TTL_MS = 10_000

function ours(addresses: string[]): Contender {
  const lock = new DistributedLock({ redis_nodes: addresses, retry_count: 0 })
  return {
    name: 'redis-quorum-lock',
    async acquire(key) {
      const handle = await lock.acquire(key, TTL_MS)
      if (!handle) throw new Error(`${key} not acquired`)
      return () => lock.release(handle)
    },
    close: () => lock.close(),
  }
}

function redlock(addresses: string[]): Contender {
  const clients = addresses.map((address) => {
    const [host, port] = address.split(':')
    return new Redis({ host, port: Number(port) })
  })
  const instance = new Redlock(clients, { retryCount: 0 })
  return {
    name: 'redlock@5.0.0-beta.2',
    async acquire(key) {
      const lock = await instance.acquire([key], TTL_MS)
      return () => lock.release()
    },
    async close() {
      await instance.quit()
    },
  }
}

interface Result {
  pairsPerSecond: number
  p50Us: number
  p99Us: number
}

async function measure(contender: Contender, pairs: number, concurrency: number, round: number): Promise<Result> {
  const latencies = new Float64Array(pairs)
  let next = 0
  const worker = async () => {
    for (;;) {
      const i = next++
      if (i >= pairs) return
      const started = performance.now()
      const release = await contender.acquire(`bench:${round}:${concurrency}:${i}`)
      latencies[i] = performance.now() - started
      await release()
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, worker))
  const seconds = (performance.now() - started) / 1000
  latencies.sort()
  return {
    pairsPerSecond: pairs / seconds,
    p50Us: latencies[Math.floor(pairs * 0.5)] * 1000,
    p99Us: latencies[Math.floor(pairs * 0.99)] * 1000,
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { rounds: { type: 'string', default: '3' }, pairs: { type: 'string', default: '5000' } },
  })
  const rounds = Number(values.rounds)
  const pairs = Number(values.pairs)
  const cluster = await Cluster.start(3)
  const contenders = [ours(cluster.addresses), redlock(cluster.addresses)]
  const results = new Map<string, Result[]>()
  try {
    for (const contender of contenders) await measure(contender, 200, 8, -1)
    for (let round = 0; round < rounds; round++) {
      // Rotate the order so that no library always runs first or last.
      const order = contenders.map((_, i) => contenders[(i + round) % contenders.length])
      for (const concurrency of [1, 64]) {
        for (const contender of order) {
          const result = await measure(contender, pairs, concurrency, round)
          const key = `${contender.name}@${concurrency}`
          results.set(key, [...(results.get(key) ?? []), result])
        }
      }
      process.stderr.write(`round ${round + 1} of ${rounds} done\n`)
    }
  } finally {
    for (const contender of contenders) await contender.close()
    await cluster.stop()
  }

  for (const concurrency of [1, 64]) {
    console.log(`\nconcurrency ${concurrency}: ${pairs} acquire+release pairs per round, median of ${rounds} rounds`)
    console.log('| library | pairs/s | acquire p50 (µs) | acquire p99 (µs) | pairs/s vs redlock |')
    console.log('| --- | ---: | ---: | ---: | ---: |')
    const baseline = median((results.get(`redlock@5.0.0-beta.2@${concurrency}`) ?? []).map((r) => r.pairsPerSecond))
    for (const contender of contenders) {
      const runs = results.get(`${contender.name}@${concurrency}`) ?? []
      const rate = median(runs.map((r) => r.pairsPerSecond))
      console.log(
        `| ${contender.name} | ${rate.toFixed(0)} | ${median(runs.map((r) => r.p50Us)).toFixed(0)} | ` +
          `${median(runs.map((r) => r.p99Us)).toFixed(0)} | ${(rate / baseline).toFixed(2)}x |`,
      )
    }
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})

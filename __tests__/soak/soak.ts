// The soak test (`npm run soak`): long runs that show nothing grows and
// nothing crashes.
//   1. acquire/release pairs at concurrency 64 with RSS sampled: fails when
//      RSS after warm-up grows by more than 10%, or descriptors grow;
//   2. DistributedLock instances created, used and closed in a loop: fails
//      when descriptors or threads grow;
//   3. nodes stopped and started repeatedly under load: fails on a crash,
//      an unhandled rejection, an error code other than
//      ERR_QUORUM_UNAVAILABLE, a key without TTL, or no lock once the nodes
//      are back.
//
// Usage: npm run soak [-- --pairs 1000000] [--instances 1000] [--flap-seconds 20]
// Run with --expose-gc (the npm script does) so samples follow a collection.

import { readdirSync } from 'node:fs'
import { parseArgs } from 'node:util'

import { DistributedLock, type LockError } from '../..'
import { Cluster, waitFor } from '../helpers/redis'

const { values: flags } = parseArgs({
  options: {
    pairs: { type: 'string', default: '1000000' },
    instances: { type: 'string', default: '1000' },
    'flap-seconds': { type: 'string', default: '20' },
  },
})
const PAIRS = Number(flags.pairs)
const INSTANCES = Number(flags.instances)
const FLAP_SECONDS = Number(flags['flap-seconds'])
const CONCURRENCY = 64

const failures: string[] = []
let unhandled = 0
process.on('unhandledRejection', (error) => {
  unhandled++
  console.error('unhandled rejection:', error)
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const collect = () => (globalThis as { gc?: () => void }).gc?.()
const rssMiB = () => process.memoryUsage().rss / 2 ** 20
const descriptors = () => readdirSync('/proc/self/fd').length
const threads = () => readdirSync('/proc/self/task').length

/** Waits for descriptors closed asynchronously (sockets of a closed lock) to go. */
async function settledDescriptors(atMost: number): Promise<number> {
  const deadline = Date.now() + 2_000
  while (descriptors() > atMost && Date.now() < deadline) await sleep(20)
  return descriptors()
}

async function pairs(cluster: Cluster): Promise<void> {
  const lock = new DistributedLock({ redis_nodes: cluster.addresses, retry_count: 0 })
  const warmUp = Math.max(CONCURRENCY, Math.floor(PAIRS / 10))
  let started = 0
  let done = 0
  let held = 0
  let baseline: { rss: number; fds: number } | null = null
  const samples: number[] = []
  const sampleEvery = Math.max(1, Math.floor(PAIRS / 20))
  const begin = Date.now()
  const worker = async (id: number) => {
    while (started < PAIRS) {
      const n = started++
      const handle = await lock.acquire(`soak-${id}-${n % 1000}`, 10_000)
      if (handle) {
        held++
        await lock.release(handle)
      }
      done++
      if (done === warmUp) {
        collect()
        baseline = { rss: rssMiB(), fds: descriptors() }
      } else if (baseline !== null && done % sampleEvery === 0) {
        collect()
        samples.push(rssMiB())
      }
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, (_, id) => worker(id)))
  collect()
  const end = { rss: rssMiB(), fds: descriptors() }
  const seconds = (Date.now() - begin) / 1000
  const base = baseline ?? end
  const peak = Math.max(end.rss, ...samples)
  console.log(
    `pairs: ${done} in ${seconds.toFixed(1)} s (${Math.round(done / seconds)}/s), ${held} acquired; ` +
      `RSS after warm-up ${base.rss.toFixed(1)} MiB, peak ${peak.toFixed(1)}, end ${end.rss.toFixed(1)}; descriptors ${base.fds} -> ${end.fds}`,
  )
  if (held !== done) failures.push(`pairs: only ${held} of ${done} acquisitions succeeded on distinct keys`)
  if (end.rss > base.rss * 1.1) failures.push(`pairs: RSS grew from ${base.rss.toFixed(1)} to ${end.rss.toFixed(1)} MiB (more than 10%)`)
  if (end.fds > base.fds) failures.push(`pairs: descriptors grew from ${base.fds} to ${end.fds}`)
  await lock.close()
}

async function instances(cluster: Cluster): Promise<void> {
  const cycle = async () => {
    const lock = new DistributedLock({ redis_nodes: cluster.addresses, retry_count: 0 })
    const handle = await lock.acquire('instances', 5_000)
    if (!handle) throw new Error('an instance could not acquire a free lock')
    await lock.close()
  }
  // The first instances start the I/O thread and warm the allocator.
  for (let i = 0; i < 10; i++) await cycle()
  collect()
  const before = { fds: await settledDescriptors(0), threads: threads() }
  for (let i = 10; i < INSTANCES; i++) await cycle()
  collect()
  const after = { fds: await settledDescriptors(before.fds), threads: threads() }
  console.log(`instances: ${INSTANCES} created, used and closed; descriptors ${before.fds} -> ${after.fds}, threads ${before.threads} -> ${after.threads}`)
  if (after.fds > before.fds) failures.push(`instances: descriptors grew from ${before.fds} to ${after.fds}`)
  if (after.threads > before.threads) failures.push(`instances: threads grew from ${before.threads} to ${after.threads}`)
}

async function flapping(cluster: Cluster): Promise<void> {
  const lock = new DistributedLock({ redis_nodes: cluster.addresses, retry_count: 0, command_timeout_ms: 200, lock_ttl_ms: 2_000 })
  const until = Date.now() + FLAP_SECONDS * 1_000
  const codes = new Map<string, number>()
  let acquired = 0
  const worker = async (id: number) => {
    while (Date.now() < until) {
      try {
        const handle = await lock.acquire(`flap-${id}`, 2_000)
        if (handle) {
          acquired++
          await lock.extend(handle)
          await lock.release(handle)
        }
      } catch (error) {
        const code = (error as LockError).code ?? 'NO_CODE'
        codes.set(code, (codes.get(code) ?? 0) + 1)
        await sleep(10)
      }
    }
  }
  const nemesis = async () => {
    while (Date.now() < until - 1_000) {
      const down = [...cluster.nodes].sort(() => Math.random() - 0.5).slice(0, 1 + Math.floor(Math.random() * 2))
      for (const node of down) await node.kill()
      await sleep(100 + Math.random() * 400)
      for (const node of down) await node.start()
      await sleep(100 + Math.random() * 400)
    }
  }
  await Promise.all([nemesis(), ...Array.from({ length: 16 }, (_, id) => worker(id))])
  await waitFor('a lock once every node is back', async () => {
    const handle = await lock.acquire('flap-after', 2_000).catch(() => null)
    if (handle) await lock.release(handle)
    return handle !== null
  }, 10_000)
  let withoutTtl = 0
  for (const node of cluster.nodes) {
    for (const key of await node.redis().keys('redlock:*')) {
      // The fencing counters have no TTL on purpose.
      if (!key.startsWith('redlock:fence:') && (await node.redis().pttl(key)) === -1) withoutTtl++
    }
  }
  await lock.close()
  console.log(`flapping: ${acquired} acquired in ${FLAP_SECONDS} s; errors ${JSON.stringify(Object.fromEntries(codes))}; keys without TTL ${withoutTtl}`)
  for (const code of codes.keys()) {
    if (code !== 'ERR_QUORUM_UNAVAILABLE') failures.push(`flapping: unexpected error code ${code}`)
  }
  if (acquired === 0) failures.push('flapping: no lock acquired while nodes flapped')
  if (withoutTtl > 0) failures.push(`flapping: ${withoutTtl} keys without TTL`)
}

async function main(): Promise<void> {
  // Durable nodes (AOF on tmpfs), so the restarts of the flapping phase
  // keep the nodes in the quorum, as a production cluster's would.
  const cluster = await Cluster.start(3)
  try {
    await pairs(cluster)
    await instances(cluster)
    await flapping(cluster)
  } finally {
    await cluster.stop()
  }
  if (unhandled > 0) failures.push(`${unhandled} unhandled rejections`)
  if (failures.length > 0) {
    for (const failure of failures) console.error(`FAIL ${failure}`)
    process.exit(1)
  }
  console.log('soak passed')
}

main().catch((error: Error) => {
  console.error(error.stack ?? error.message)
  process.exit(1)
})

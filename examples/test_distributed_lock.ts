// End-to-end check of the lock against a running cluster (the one of
// `npm run redis:start`, or REDIS_NODES / REDIS_INSTANCES): competition,
// extend, release, takeover after the holder's TTL, and the quorum with one
// node unreachable. One PASS/FAIL line each; exit code 1 on any failure.
//
// Usage: npm run test:lock

import { DistributedLock, resolveNodes, type LockError } from '..'

const run = `test-lock:${process.pid}:${Date.now()}`
const resolved = resolveNodes()
const nodes = resolved.map((node) => node.label)
// The nodes with their credentials, for the locks that replace some of them.
const reachable = resolved.map(({ label: _, ...node }) => node)
let failures = 0

async function check(name: string, body: () => Promise<string>): Promise<void> {
  try {
    console.log(`PASS ${name}: ${await body()}`)
  } catch (error) {
    failures++
    const e = error as LockError
    console.log(`FAIL ${name}: ${e.code ? `${e.code}: ` : ''}${e.message}`)
  }
}

function expect(condition: boolean, message: string): void {
  if (!condition) throw new Error(message)
}

async function main(): Promise<void> {
  console.log(`Checking the lock on ${nodes.join(', ')}`)
  const a = new DistributedLock({ retry_count: 0 })
  const b = new DistributedLock({ retry_count: 0 })
  try {
    await check('competition', async () => {
      const resource = `${run}:competition`
      const [first, second] = await Promise.all([a.acquire(resource, 10_000), b.acquire(resource, 10_000)])
      const winners = [first, second].filter((h) => h !== null)
      expect(winners.length === 1, `${winners.length} of 2 instances got the lock`)
      await Promise.all([first && a.release(first), second && b.release(second)])
      return 'exactly one of two instances got the lock'
    })

    await check('extend', async () => {
      const handle = await a.acquire(`${run}:extend`, 2_000)
      expect(handle !== null, 'not acquired')
      const before = handle!.validityMs
      expect(await a.extend(handle!, 20_000), 'extend returned false')
      expect(handle!.validityMs > before, `validity ${handle!.validityMs} ms after extending from ${before} ms`)
      await a.release(handle!)
      return `validity ${before} ms -> ${handle!.validityMs} ms`
    })

    await check('release', async () => {
      const resource = `${run}:release`
      const handle = await a.acquire(resource, 10_000)
      expect(handle !== null, 'not acquired')
      expect((await b.acquire(resource, 10_000)) === null, 'a second owner got a held lock')
      expect(await a.release(handle!), 'release returned false')
      const next = await b.acquire(resource, 10_000)
      expect(next !== null, 'not free after release')
      await b.release(next!)
      return 'released, and free for the next owner at once'
    })

    await check('takeover after the TTL', async () => {
      const resource = `${run}:takeover`
      const crashed = await a.acquire(resource, 1_000)
      expect(crashed !== null, 'not acquired')
      // The holder "crashes": it never releases. The next owner waits, and
      // gets in once the holder's TTL has run out.
      const started = Date.now()
      const taker = new DistributedLock()
      const next = await taker.acquire(resource, 10_000, { wait_ms: 3_000 })
      const waited = Date.now() - started
      await taker.close()
      expect(next !== null, 'no takeover')
      expect(waited < 3_000, `takeover took ${waited} ms`)
      return `taken over after ${waited} ms (TTL 1000 ms)`
    })

    await check('quorum with one node down', async () => {
      if (nodes.length < 3) return `skipped: ${nodes.length} node(s) configured`
      // A closed port stands in for the down node, so the check never stops a node of a shared cluster.
      const oneDown = new DistributedLock({ redis_nodes: ['127.0.0.1:1', ...reachable.slice(1)], retry_count: 0, connect_timeout_ms: 500 })
      const handle = await oneDown.acquire(`${run}:quorum`, 10_000)
      expect(handle !== null, 'not acquired with a majority up')
      await oneDown.release(handle!)
      await oneDown.close()
      const majorityDown = new DistributedLock({
        redis_nodes: ['127.0.0.1:1', '127.0.0.1:2', ...reachable.slice(2)],
        retry_count: 0,
        connect_timeout_ms: 500,
      })
      const error = await majorityDown.acquire(`${run}:quorum`, 10_000).then(() => null, (e: LockError) => e)
      await majorityDown.close()
      expect(error?.code === 'ERR_QUORUM_UNAVAILABLE', `with a majority down: ${error ? error.code : 'acquired'}`)
      return `acquired with ${nodes.length - 1} of ${nodes.length} nodes; ERR_QUORUM_UNAVAILABLE without a majority`
    })
  } finally {
    await a.close()
    await b.close()
  }
  console.log(failures === 0 ? 'All checks passed.' : `${failures} check(s) failed.`)
  process.exitCode = failures === 0 ? 0 : 1
}

main().catch((error: Error) => {
  console.error(error.message)
  process.exitCode = 1
})

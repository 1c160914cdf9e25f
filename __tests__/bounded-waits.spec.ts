import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { type DistributedLock, type LockError } from '..'
import { useCluster } from './helpers/fixture'
import { type RedisNode, waitFor } from './helpers/redis'

/** The default `command_timeout_ms`, which these instances keep. */
const COMMAND_TIMEOUT_MS = 500
const WAIT_MS = 1_000
/**
 * What a shared, loaded 2-core machine may add to a measured span on top of
 * the bound itself: process scheduling and event-loop turns, never a node.
 */
const SLACK_MS = 250
/** Far past every bound: a call still pending then hangs, and the test fails instead of the run. */
const HANG_MS = 8_000

/** Awaits `promise` and tells how long it took; rejects when it is still pending after HANG_MS. */
async function timed<T>(what: string, promise: Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now()
  let timer: NodeJS.Timeout | undefined
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} still pending after ${HANG_MS} ms`)), HANG_MS)
  })
  try {
    const value = await Promise.race([promise, hang])
    return { value, ms: Date.now() - started }
  } finally {
    clearTimeout(timer)
  }
}

describe('waits and close() are bounded with a node paused, black-holed or gone', () => {
  const t = useCluster(3, { lock: { retry_count: 0 } })

  const subscribers = (key: string, nodes = t.cluster.nodes) =>
    Promise.all(nodes.map(async (node) => Number(((await node.redis().call('PUBSUB', 'NUMSUB', key)) as [string, number])[1])))

  /** Waits for `resource` held by the suite's lock and expects null within wait_ms plus one command timeout. */
  async function waitsInBound(waiter: DistributedLock, resource: string): Promise<void> {
    const waited = await timed(`the wait for ${resource}`, waiter.acquire(resource, 30_000, { wait_ms: WAIT_MS }))
    assert.equal(waited.value, null)
    assert.ok(waited.ms >= WAIT_MS - 5, `gave up after ${waited.ms} ms, before wait_ms`)
    assert.ok(waited.ms <= WAIT_MS + COMMAND_TIMEOUT_MS + SLACK_MS, `resolved after ${waited.ms} ms`)
  }

  async function closesInBound(waiter: DistributedLock): Promise<void> {
    const closed = await timed('close()', waiter.close())
    assert.ok(closed.ms <= COMMAND_TIMEOUT_MS + SLACK_MS, `close() took ${closed.ms} ms`)
  }

  /** Runs `during` while the suite's lock holds `resources`, and releases them however it ends. */
  async function whileHeld(resources: string[], during: () => Promise<void>): Promise<void> {
    const held = await Promise.all(resources.map((resource) => t.lock.acquire(resource, 30_000)))
    try {
      assert.ok(held.every((handle) => handle !== null))
      await during()
    } finally {
      for (const handle of held) if (handle) await t.lock.release(handle)
    }
  }

  /** Runs `during` after pausing `node`, and resumes it however it ends. */
  async function whilePaused(node: RedisNode, during: () => Promise<void>): Promise<void> {
    node.pause()
    try {
      await during()
    } finally {
      node.resume()
    }
  }

  test('a wait begun after a node was paused resolves null within wait_ms plus one command timeout, and close() within one command timeout', async () => {
    await whileHeld(['x', 'y'], async () => {
      const waiter = t.newLock()
      await waitsInBound(waiter, 'x')
      await whilePaused(t.cluster.nodes[2], async () => {
        await waitsInBound(waiter, 'y')
        await closesInBound(waiter)
      })
    })
  })

  test('an aborted wait with a node paused rejects at once, drops its subscriptions, and close() stays bounded', async () => {
    await whileHeld(['aborted'], async () => {
      const waiter = t.newLock()
      assert.equal(await waiter.acquire('aborted', 30_000, { wait_ms: 200 }), null, 'a first wait opens the subscription connections')
      await whilePaused(t.cluster.nodes[2], async () => {
        const controller = new AbortController()
        const waiting = waiter.acquire('aborted', 30_000, { wait_ms: 5_000, signal: controller.signal })
        await new Promise((resolve) => setTimeout(resolve, 300))
        controller.abort()
        const rejected = await timed('the aborted wait', waiting.then(() => assert.fail('resolved'), (error: LockError) => error))
        assert.equal(rejected.value.code, 'ABORT_ERR')
        assert.ok(rejected.ms < 50, `rejected ${rejected.ms} ms after the abort`)
        // The engine's side of the wait ended too: it left the waiters, so
        // the nodes that answer drop the key's subscription.
        await waitFor('the subscriptions of the aborted wait to go', async () =>
          (await subscribers('redlock:aborted', t.cluster.nodes.slice(0, 2))).every((n) => n === 0), 2_000)
        await closesInBound(waiter)
      })
    })
  })

  test('a node paused before the first connection (black-holed) bounds neither the wait nor close()', async () => {
    await whileHeld(['black-holed'], () =>
      whilePaused(t.cluster.nodes[1], async () => {
        const waiter = t.newLock()
        await waitsInBound(waiter, 'black-holed')
        await closesInBound(waiter)
      }))
  })

  test('a node that is gone (killed) bounds neither the wait nor close()', async () => {
    await whileHeld(['gone'], async () => {
      const waiter = t.newLock()
      const gone = t.cluster.nodes[0]
      await waitsInBound(waiter, 'gone')
      await gone.kill()
      try {
        await waitsInBound(waiter, 'gone')
        await closesInBound(waiter)
      } finally {
        await gone.start()
      }
    })
  })

  test('with a majority paused, a wait rejects ERR_QUORUM_UNAVAILABLE within wait_ms plus one command timeout', async () => {
    // A retry delay that ends past most of these deadlines: the pause must be
    // cut at the deadline, so that the last attempt begins there.
    const waiter = t.newLock({ retry_delay_ms: 400, retry_jitter_ms: 0 })
    const warm = await waiter.acquire('majority-paused', 1_000)
    assert.ok(warm, 'the connections are open')
    assert.equal(await waiter.release(warm), true)
    await whilePaused(t.cluster.nodes[1], () =>
      whilePaused(t.cluster.nodes[2], async () => {
        for (const [wait, fencing] of [[550, false], [600, true], [650, false], [700, true], [750, false]] as const) {
          const waited = await timed(`the wait of ${wait} ms`, waiter.acquire('majority-paused', 10_000, { wait_ms: wait, fencing }).then(
            () => assert.fail('resolved'),
            (error: LockError) => error,
          ))
          assert.equal(waited.value.code, 'ERR_QUORUM_UNAVAILABLE')
          assert.ok(waited.ms >= wait - 5, `gave up after ${waited.ms} ms, before wait_ms ${wait}`)
          assert.ok(waited.ms <= wait + COMMAND_TIMEOUT_MS + SLACK_MS, `rejected after ${waited.ms} ms with wait_ms ${wait}, fencing ${fencing}`)
        }
      }))
  })
})

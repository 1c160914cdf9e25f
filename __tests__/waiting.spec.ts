import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, test } from 'node:test'

import { DistributedLock, type LockError } from '..'
import { Cluster, waitFor } from './helpers/redis'

describe('waiting woken by release (wait_ms)', () => {
  let cluster: Cluster
  let holder: DistributedLock
  let waiter: DistributedLock

  before(async () => {
    cluster = await Cluster.start(3)
    holder = new DistributedLock({ redis_nodes: cluster.addresses, retry_count: 0 })
    // A retry delay far longer than the hand-over: a waiter that polled could not be on time.
    waiter = new DistributedLock({ redis_nodes: cluster.addresses, retry_delay_ms: 5_000, retry_jitter_ms: 0 })
  })
  after(async () => {
    await holder.close()
    await waiter.close()
    await cluster.stop()
  })
  beforeEach(() => cluster.flush())

  const subscriptions = async (key: string) =>
    Promise.all(cluster.nodes.map(async (node) => {
      const reply = (await node.redis().call('PUBSUB', 'NUMSUB', key)) as [string, number]
      return Number(reply[1])
    }))

  test('a release hands the lock to a waiter at once', async () => {
    const held = await holder.acquire('handover', 30_000)
    assert.ok(held)
    const waiting = waiter.acquire('handover', 30_000, { wait_ms: 20_000 })
    await waitFor('the waiter to subscribe', async () => (await subscriptions('redlock:handover')).every((n) => n === 1))
    const released = Date.now()
    assert.equal(await holder.release(held), true)
    const next = await waiting
    const handover = Date.now() - released
    assert.ok(next, 'the waiter got the lock')
    assert.ok(handover < 100, `hand-over took ${handover} ms with a 5000 ms retry delay`)
    // Refused, refused again right after subscribing, then woken by the release.
    assert.equal(next.attempts, 3)
    await waitFor('the subscription to go', async () => (await subscriptions('redlock:handover')).every((n) => n === 0))
    await waiter.release(next)
  })

  test('a waiter also wakes when the holder lease runs out, and gives up with null when the wait does', async () => {
    const crashed = await holder.acquire('expiring', 300)
    assert.ok(crashed)
    const started = Date.now()
    const next = await waiter.acquire('expiring', 30_000, { wait_ms: 5_000 })
    assert.ok(next, 'taken once the lease ran out')
    assert.ok(Date.now() - started < 2_000)
    const before = Date.now()
    assert.equal(await holder.acquire('expiring', 30_000, { wait_ms: 300 }), null)
    const waited = Date.now() - before
    assert.ok(waited >= 250 && waited < 2_000, `gave up after ${waited} ms`)
  })

  test('an abort rejects at once with ABORT_ERR and leaves no subscription behind', async () => {
    const held = await holder.acquire('aborted', 30_000)
    assert.ok(held)
    const controller = new AbortController()
    const waiting = waiter.acquire('aborted', 30_000, { wait_ms: 20_000, signal: controller.signal })
    await waitFor('the waiter to subscribe', async () => (await subscriptions('redlock:aborted')).every((n) => n === 1))
    const aborted = Date.now()
    controller.abort(new Error('shutting down'))
    await assert.rejects(waiting, (error: LockError & { cause?: Error }) => {
      assert.equal(error.code, 'ABORT_ERR')
      assert.equal(error.name, 'AbortError')
      assert.equal(error.cause?.message, 'shutting down')
      return true
    })
    assert.ok(Date.now() - aborted < 50, 'rejected at once')
    await waitFor('the subscription to go', async () => (await subscriptions('redlock:aborted')).every((n) => n === 0))
    await assert.rejects(waiter.acquire('aborted', 1_000, { signal: controller.signal }), { code: 'ABORT_ERR' })
    await assert.rejects(waiter.acquire('aborted', 1_000, { signal: 'no' as never }), { code: 'ERR_INVALID_ARG', message: /signal/ })
    await cluster.settled('redlock:aborted', [held.value, held.value, held.value])
  })

  test('a thousand waiters on one resource each get it exactly once, one at a time, without polling', async () => {
    const crowd = new DistributedLock({ redis_nodes: cluster.addresses, retry_delay_ms: 5_000, retry_jitter_ms: 0 })
    const count = 1_000
    let holding = 0
    let most = 0
    const wins = new Map<number, number>()
    const setsBefore = await cluster.calls('set')
    await Promise.all(Array.from({ length: count }, async (_, i) => {
      const handle = await crowd.acquire('crowded', 30_000, { wait_ms: 120_000 })
      assert.ok(handle, `waiter ${i} got nothing`)
      holding++
      most = Math.max(most, holding)
      wins.set(i, (wins.get(i) ?? 0) + 1)
      await new Promise((resolve) => setImmediate(resolve))
      holding--
      assert.equal(await crowd.release(handle), true)
    }))
    assert.equal(most, 1, 'two waiters held the lock at once')
    assert.equal(wins.size, count)
    assert.ok([...wins.values()].every((n) => n === 1))
    const sets = (await cluster.calls('set')).map((n, i) => n - setsBefore[i])
    // Each release wakes a few waiters, not all of them: far below count * count.
    assert.ok(sets.every((n) => n < count * 10), `SET calls per node: ${sets}`)
    await crowd.close()
  })

  test('wait_ms must be a whole number of milliseconds', async () => {
    for (const wait of [-1, 1.5, '100', Number.NaN]) {
      await assert.rejects(waiter.acquire('x', 1_000, { wait_ms: wait as number }), { code: 'ERR_INVALID_ARG', message: /wait_ms/ })
    }
  })
})

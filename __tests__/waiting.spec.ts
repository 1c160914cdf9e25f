import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { before, describe, test } from 'node:test'

import { DistributedLock, type LockError } from '..'
import { useCluster } from './helpers/fixture'
import { waitFor } from './helpers/redis'

describe('waiting woken by release (wait_ms)', () => {
  const t = useCluster(3, { flush: 'each' })
  let holder: DistributedLock
  let waiter: DistributedLock

  before(() => {
    holder = t.newLock({ retry_count: 0 })
    // A retry delay far longer than the hand-over: a waiter that polled could not be on time.
    waiter = t.newLock({ retry_delay_ms: 5_000, retry_jitter_ms: 0 })
  })

  const subscriptions = async (key: string) =>
    Promise.all(t.cluster.nodes.map(async (node) => {
      const reply = (await node.redis().call('PUBSUB', 'NUMSUB', key)) as [string, number]
      return Number(reply[1])
    }))

  test('a release hands the lock to a waiter at once', async () => {
    for (let round = 0; round < 20; round++) {
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
      // Refused, then tried again right after subscribing (granted there if
      // the release came first), else woken by the first node's
      // notification. The release may not have reached the other nodes yet
      // when the woken attempt does: refused there, it is woken again by the
      // next node's notification, one attempt more per node at most.
      assert.ok(next.attempts >= 2 && next.attempts <= 2 + t.cluster.nodes.length, `${next.attempts} attempts`)
      await waitFor('the subscription to go', async () => (await subscriptions('redlock:handover')).every((n) => n === 0))
      assert.equal(await waiter.release(next), true)
    }
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
    await t.cluster.settled('redlock:aborted', [held.value, held.value, held.value])
  })

  test('a thousand waiters on one resource each get it exactly once, one at a time, without polling', async () => {
    const crowd = t.newLock({ retry_delay_ms: 5_000, retry_jitter_ms: 0 })
    const count = 1_000
    let holding = 0
    let most = 0
    const wins = new Map<number, number>()
    const setsBefore = await t.cluster.calls('set')
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
    const sets = (await t.cluster.calls('set')).map((n, i) => n - setsBefore[i])
    // Each release wakes a few waiters, not all of them: far below count * count.
    assert.ok(sets.every((n) => n < count * 10), `SET calls per node: ${sets}`)
  })

  test('wait_ms must be a whole number of milliseconds', async () => {
    for (const wait of [-1, 1.5, '100', Number.NaN]) {
      await assert.rejects(waiter.acquire('x', 1_000, { wait_ms: wait as number }), { code: 'ERR_INVALID_ARG', message: /wait_ms/ })
    }
  })
})

describe('waiters and close', () => {
  const t = useCluster(3)

  const connections = () =>
    Promise.all(t.cluster.nodes.map(async (node) => ((await node.redis().call('CLIENT', 'LIST')) as string).trim().split('\n').length))

  test('close() ends a wait with ERR_LOCK_CLOSED and closes its subscription connections', async () => {
    const holder = t.newLock()
    const held = await holder.acquire('closing', 30_000)
    assert.ok(held)
    const baseline = await connections()
    const waiter = t.newLock()
    const waiting = waiter.acquire('closing', 30_000, { wait_ms: 60_000 }).then(
      () => 'resolved',
      (error: LockError) => error.code,
    )
    await waitFor('the waiter to connect and subscribe', async () =>
      (await connections()).every((n, i) => n >= baseline[i] + 2))
    await waiter.close()
    assert.equal(await waiting, 'ERR_LOCK_CLOSED')
    await waitFor('the waiter connections to close', async () =>
      (await connections()).every((n, i) => n === baseline[i]))
  })

  test('waiters do not keep the process alive after close()', async () => {
    const script = `
      const { DistributedLock } = require(${JSON.stringify(path.resolve(__dirname, '..'))})
      ;(async () => {
        const nodes = ${JSON.stringify(t.cluster.addresses)}
        const holder = new DistributedLock({ redis_nodes: nodes })
        const waiter = new DistributedLock({ redis_nodes: nodes })
        if (!(await holder.acquire('closing-child', 30000))) throw new Error('not acquired')
        const waiting = waiter.acquire('closing-child', 30000, { wait_ms: 60000 }).catch((e) => e.code)
        await new Promise((r) => setTimeout(r, 200))
        await Promise.all([waiter.close(), holder.close()])
        console.log(await waiting)
        console.log(Date.now())
      })()
    `
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (data: Buffer) => {
      out += data.toString()
    })
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    const [code] = (await once(child, 'exit')) as [number | null]
    clearTimeout(killer)
    const [outcome, closedAt] = out.trim().split('\n')
    assert.equal(code, 0)
    assert.equal(outcome, 'ERR_LOCK_CLOSED')
    assert.ok(Date.now() - Number(closedAt) < 1_000, 'exited within a second of close()')
  })
})

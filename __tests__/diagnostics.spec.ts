// The diagnostics channels and stats(), read by real subscribers on a real
// cluster: each call's context, the lost lease, the watchdog's extensions,
// the nodes going down and coming back, and the counts that add up to what
// the calls did.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import diagnostics from 'node:diagnostics_channel'
import path from 'node:path'
import { afterEach, describe, it } from 'node:test'

import type { LockHandle } from '..'
import { useCluster } from './helpers/fixture'
import { RedisNode, waitFor } from './helpers/redis'

type Message = Record<string, any>

/** Everything published on the lock's channels while subscribed, by channel and event. */
function subscribeAll() {
  const seen: { channel: string; message: Message }[] = []
  const unsubscribe: (() => void)[] = []
  for (const name of ['acquire', 'extend', 'release']) {
    const channel = diagnostics.tracingChannel(`redis-quorum-lock:${name}`)
    const handlers = Object.fromEntries(
      ['start', 'end', 'asyncStart', 'asyncEnd', 'error'].map((event) => [
        event,
        (message: unknown) => seen.push({ channel: `${name}:${event}`, message: { ...(message as Message) } }),
      ]),
    )
    channel.subscribe(handlers as any)
    unsubscribe.push(() => channel.unsubscribe(handlers as any))
  }
  for (const name of ['lost', 'watchdog', 'node']) {
    const handler = (message: unknown) => seen.push({ channel: name, message: message as Message })
    diagnostics.subscribe(`redis-quorum-lock:${name}`, handler)
    unsubscribe.push(() => diagnostics.unsubscribe(`redis-quorum-lock:${name}`, handler))
  }
  return {
    seen,
    of: (channel: string) => seen.filter((entry) => entry.channel === channel).map((entry) => entry.message),
    close: () => unsubscribe.forEach((done) => done()),
  }
}

describe('diagnostics channels and stats()', () => {
  const fixture = useCluster(3)
  let subscriber: ReturnType<typeof subscribeAll> | null = null
  afterEach(() => {
    subscriber?.close()
    subscriber = null
    for (const node of fixture.cluster.nodes) {
      try {
        node.resume()
      } catch {
        // not paused
      }
    }
  })

  it('publishes each call with its context: resources, attempts, votes, outcome, handle and fencing token', async () => {
    const lock = fixture.newLock()
    const rival = fixture.newLock({ retry_count: 0 })
    subscriber = subscribeAll()
    const handle = (await lock.acquire('diag:ctx', 5000, { fencing: true })) as LockHandle
    assert.ok(handle)
    assert.equal(await rival.acquire('diag:ctx', 5000), null)
    assert.equal(await lock.extend(handle, 5000), true)
    assert.equal(await lock.release(handle), true)

    const acquires = subscriber.of('acquire:asyncEnd')
    assert.equal(acquires.length, 2)
    const [won, held] = acquires
    assert.equal(won.lock, lock)
    assert.deepEqual(won.resources, ['diag:ctx'])
    assert.equal(won.ttlMs, 5000)
    assert.equal(won.outcome, 'acquired')
    assert.equal(won.handle, handle)
    assert.equal(won.result, handle)
    assert.equal(typeof won.fencingToken, 'bigint')
    assert.equal(won.fencingToken, handle.fencingToken)
    assert.equal(won.attempts, 1)
    assert.deepEqual(
      won.votes.map((vote: Message) => vote.node),
      fixture.cluster.addresses,
    )
    // Decided at quorum: the last node may not have answered yet.
    const granted = won.votes.filter((vote: Message) => vote.vote === 'granted')
    assert.ok(granted.length >= 2, JSON.stringify(won.votes))
    for (const vote of won.votes) {
      if (vote.vote === 'granted') assert.equal(typeof vote.latencyMs, 'number')
      else assert.deepEqual([vote.vote, vote.latencyMs], ['pending', null])
    }
    assert.equal(held.lock, rival)
    assert.equal(held.outcome, 'held')
    assert.equal(held.handle, null)
    assert.ok(held.votes.some((vote: Message) => vote.vote === 'refused'))
    assert.equal(subscriber.of('acquire:start').length, 2, 'a start for each acquire')
    assert.deepEqual(
      subscriber.of('extend:asyncEnd').map((m) => [m.outcome, m.handle === handle, m.votes.length]),
      [['extended', true, 3]],
    )
    assert.deepEqual(
      subscriber.of('release:asyncEnd').map((m) => [m.outcome, m.handle === handle, m.attempts]),
      [['released', true, 1]],
    )
  })

  it('a paused majority: the acquire fails unavailable on the error event, the nodes go down and come back', async () => {
    const lock = fixture.newLock({ command_timeout_ms: 200, retry_count: 0 })
    subscriber = subscribeAll()
    assert.ok(await lock.release((await lock.acquire('diag:warm', 5000)) as LockHandle))
    const [a, b] = fixture.cluster.nodes
    a.pause()
    b.pause()
    await assert.rejects(lock.acquire('diag:down', 5000), { code: 'ERR_QUORUM_UNAVAILABLE' })
    const errors = subscriber.of('acquire:error')
    assert.equal(errors.length, 1)
    assert.equal(errors[0].outcome, 'unavailable')
    assert.equal(errors[0].error.code, 'ERR_QUORUM_UNAVAILABLE')
    assert.equal(errors[0].votes.filter((vote: Message) => vote.vote === 'failed').length, 2)
    const down = subscriber.of('node').filter((m) => m.change === 'down')
    assert.deepEqual(down.map((m) => m.node).sort(), [a.address, b.address].sort())
    assert.ok(down.every((m) => m.lock === lock && typeof m.error === 'string'))
    const stats = lock.stats()
    assert.equal(stats.unavailable, 1)
    const byNode = new Map(stats.nodes.map((node) => [node.node, node]))
    assert.equal(byNode.get(a.address)?.up, false)
    assert.equal(byNode.get(fixture.cluster.nodes[2].address)?.up, true)

    a.resume()
    b.resume()
    // A call decided at quorum may not wait for the last node: call until both were heard from.
    const upNodes = () => subscriber!.of('node').filter((m) => m.change === 'up').map((m) => m.node).sort()
    await waitFor('both nodes to be published up', async () => {
      const handle = await lock.acquire('diag:back', 5000).catch(() => null)
      if (handle !== null) await lock.release(handle)
      return upNodes().length >= 2
    })
    assert.deepEqual(upNodes(), [a.address, b.address].sort())
  })

  it('the watchdog publishes each extension, and a lease it loses to a paused majority on :lost', async () => {
    const lock = fixture.newLock({ command_timeout_ms: 200 })
    subscriber = subscribeAll()
    const handle = (await lock.acquire('diag:watched', 900, { auto_extend: true })) as LockHandle
    assert.ok(handle)
    await waitFor('a watchdog extension to be published', () =>
      subscriber!.of('watchdog').some((m) => m.handle === handle && m.extended === true),
    )
    const extension = subscriber.of('watchdog').find((m) => m.extended)!
    assert.equal(extension.lock, lock)
    assert.deepEqual(extension.resources, ['diag:watched'])
    assert.ok(extension.granted >= 2, `granted ${extension.granted}`)
    assert.ok(extension.validityMs > 0 && extension.validityMs <= 900)
    const [a, b] = fixture.cluster.nodes
    a.pause()
    b.pause()
    await waitFor('the lease to be published lost', () => subscriber!.of('lost').length > 0)
    const [lost] = subscriber.of('lost')
    assert.equal(lost.handle, handle)
    assert.equal(lost.lock, lock)
    assert.deepEqual(lost.resources, ['diag:watched'])
    assert.match(lost.reason, /watchdog/)
    assert.equal(handle.signal.aborted, true)
    assert.ok(subscriber.of('watchdog').some((m) => m.handle === handle && m.lost === true))
    const stats = lock.stats()
    assert.equal(stats.lost, 1)
    assert.ok(stats.extended >= 1, `extended ${stats.extended}`)
    assert.ok(stats.extensionFailures >= 1, `extension failures ${stats.extensionFailures}`)
    assert.equal(stats.heldNow, 0)
  })

  it('a node without durable persistence is published entering the restart quarantine and leaving it', async () => {
    // Volatile on purpose: a node that keeps no durable data is quarantined for max_ttl_ms after it starts.
    const volatile = await RedisNode.start({ durable: false })
    try {
      const nodes = [...fixture.cluster.addresses, volatile.address]
      const lock = fixture.newLock({ redis_nodes: nodes, retry_count: 0, lock_ttl_ms: 800, max_ttl_ms: 800 })
      subscriber = subscribeAll()
      const changes = () => subscriber!.of('node').filter((m) => m.node === volatile.address).map((m) => m.change)
      const call = async () => {
        const handle = await lock.acquire('diag:quarantine', 800)
        if (handle !== null) await lock.release(handle)
      }
      await waitFor('the quarantine to be published', async () => {
        await call()
        return changes().includes('quarantined')
      })
      assert.equal(lock.stats().nodes[3].quarantined, true)
      await waitFor('the node to count again', async () => {
        await call()
        return changes().includes('counted')
      })
      assert.deepEqual(changes(), ['quarantined', 'counted'])
      assert.equal(lock.stats().nodes[3].quarantined, false)
    } finally {
      await volatile.stop()
    }
  })

  it('stats() counts what the calls did, without any subscriber', async () => {
    const lock = fixture.newLock({ retry_count: 0 })
    const rival = fixture.newLock({ retry_count: 0 })
    const waiter = fixture.newLock()
    const fresh = lock.stats()
    assert.deepEqual(
      { ...fresh, nodes: fresh.nodes.map((node) => [node.up, node.lastLatencyMs, node.quarantined]) },
      {
        acquired: 0,
        held: 0,
        unavailable: 0,
        aborted: 0,
        extended: 0,
        extensionFailures: 0,
        lost: 0,
        released: 0,
        inFlight: 0,
        heldNow: 0,
        nodes: [
          [null, null, false],
          [null, null, false],
          [null, null, false],
        ],
      },
    )
    const handle = (await lock.acquire('diag:stats', 5000)) as LockHandle
    assert.equal(await rival.acquire('diag:stats', 5000), null)
    assert.equal(await rival.acquire('diag:stats', 5000), null)
    const inFlight = waiter.acquire('diag:stats', 5000, { wait_ms: 5000 })
    assert.equal(waiter.stats().inFlight, 1)
    assert.equal(lock.stats().heldNow, 1)
    assert.equal(await lock.extend(handle), true)
    assert.equal(await lock.release(handle), true)
    const waited = await inFlight
    assert.ok(waited, 'the waiting acquire wins once the lock is released')
    await waiter.release(waited)
    const controller = new AbortController()
    const other = (await lock.acquire('diag:stats', 5000)) as LockHandle
    const aborted = waiter.acquire('diag:stats', 5000, { wait_ms: 5000, signal: controller.signal })
    controller.abort()
    await assert.rejects(aborted, { code: 'ABORT_ERR' })
    await waitFor('the aborted acquire to end natively', () => waiter.stats().inFlight === 0)
    await lock.release(other)

    const mine = lock.stats()
    assert.equal(mine.acquired, 2)
    assert.equal(mine.extended, 1)
    assert.equal(mine.released, 2)
    assert.equal(mine.heldNow, 0)
    assert.equal(mine.inFlight, 0)
    for (const node of mine.nodes) {
      assert.equal(node.up, true)
      assert.ok(typeof node.lastLatencyMs === 'number' && node.lastLatencyMs >= 0)
      assert.equal(node.quarantined, false)
    }
    assert.equal(rival.stats().held, 2)
    const waiterStats = waiter.stats()
    assert.deepEqual([waiterStats.acquired, waiterStats.released, waiterStats.aborted], [1, 1, 1])
  })

  it('a lock dropped without close() is still collected: the subscriber check holds it weakly', () => {
    const script = `
      const { DistributedLock } = require(${JSON.stringify(path.resolve(__dirname, '..'))})
      const collected = new FinalizationRegistry(() => { console.log('collected'); process.exit(0) })
      ;(() => collected.register(new DistributedLock({ redis_nodes: ['127.0.0.1:1'] }), 'lock'))()
      setInterval(() => globalThis.gc(), 20)
      setTimeout(() => { console.log('kept alive'); process.exit(1) }, 5000)`
    const run = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 30_000 })
    assert.equal(run.stdout.trim(), 'collected', run.stderr)
  })
})

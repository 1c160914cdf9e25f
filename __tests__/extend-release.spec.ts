import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, test } from 'node:test'

import { DistributedLock } from '..'
import { Cluster, waitFor } from './helpers/redis'

describe('extend and release', () => {
  let cluster: Cluster
  let lock: DistributedLock

  before(async () => {
    cluster = await Cluster.start(3)
    lock = new DistributedLock({ redis_nodes: cluster.addresses, retry_count: 0 })
  })
  after(async () => {
    await lock.close()
    await cluster.stop()
  })
  beforeEach(() => cluster.flush())

  test('extend sets the new TTL on every node and recomputes the validity', async () => {
    const handle = await lock.acquire('extend', 2_000)
    assert.ok(handle)
    const before = handle.expiresAt
    assert.equal(await lock.extend(handle, 20_000), true)
    assert.ok(handle.validityMs > 19_000 && handle.validityMs <= 19_798, `validity ${handle.validityMs}`)
    assert.ok(handle.expiresAt > before + 15_000)
    await waitFor('every node to hold the new TTL', async () => (await cluster.pttls('redlock:extend')).every((pttl) => pttl > 19_000))
    await cluster.settled('redlock:extend', [handle.value, handle.value, handle.value])
  })

  test('an extend right after an acquire whose write still waits for a connecting node sets the new TTL there too', async () => {
    // A new instance connects with its first acquire; the paused node holds
    // its connection half-open, so the lock's write to it trails the grant.
    const fresh = new DistributedLock({ redis_nodes: cluster.addresses, retry_count: 0, command_timeout_ms: 2_000 })
    const connecting = cluster.nodes[2]
    connecting.pause()
    try {
      const handle = await fresh.acquire('trailing', 2_000)
      assert.ok(handle)
      const extended = fresh.extend(handle, 20_000)
      setTimeout(() => connecting.resume(), 100)
      assert.equal(await extended, true)
      await waitFor('every node to hold the new TTL', async () => (await cluster.pttls('redlock:trailing')).every((pttl) => pttl > 19_000))
    } finally {
      connecting.resume()
      await fresh.close()
    }
  })

  test('extend without a TTL renews for the TTL the lock was acquired with', async () => {
    const handle = await lock.acquire('renew', 5_000)
    assert.ok(handle)
    await cluster.nodes[0].redis().pexpire('redlock:renew', 1_000)
    assert.equal(await handle.extend(), true)
    await waitFor('every node to hold the renewed TTL', async () =>
      (await cluster.pttls('redlock:renew')).every((pttl) => pttl > 4_000 && pttl <= 5_000))
  })

  test('extend is false when a majority no longer holds our value, and touches no foreign key', async () => {
    const handle = await lock.acquire('lost', 10_000)
    assert.ok(handle)
    await cluster.nodes[0].redis().set('redlock:lost', 'foreign', 'PX', 3_000)
    await cluster.nodes[1].redis().del('redlock:lost')
    const validity = handle.validityMs
    assert.equal(await lock.extend(handle, 60_000), false)
    assert.equal(handle.validityMs, validity, 'a failed extend leaves the validity alone')
    await cluster.settled('redlock:lost', ['foreign', null, null])
    const [foreign] = await cluster.pttls('redlock:lost')
    assert.ok(foreign > 0 && foreign <= 3_000, 'the foreign key kept its TTL')
    assert.equal(await lock.release(handle), false, 'a lost lock has nothing left to release')
  })

  test('release deletes only its own value and reports whether a majority had it', async () => {
    const handle = await lock.acquire('mine', 10_000)
    assert.ok(handle)
    await cluster.nodes[2].redis().set('redlock:mine', 'foreign', 'PX', 10_000)
    assert.equal(await lock.release(handle), true)
    await cluster.settled('redlock:mine', [null, null, 'foreign'])
  })

  test('release is false when a majority holds another value', async () => {
    const handle = await lock.acquire('taken', 10_000)
    assert.ok(handle)
    await cluster.nodes[0].redis().set('redlock:taken', 'foreign', 'PX', 10_000)
    await cluster.nodes[1].redis().set('redlock:taken', 'foreign', 'PX', 10_000)
    assert.equal(await handle.release(), false)
    await cluster.settled('redlock:taken', ['foreign', 'foreign', null])
  })

  test('releasing twice resolves false the second time', async () => {
    const handle = await lock.acquire('twice', 10_000)
    assert.ok(handle)
    assert.equal(await lock.release(handle), true)
    assert.equal(await lock.release(handle), false)
    assert.equal(await lock.extend(handle), false, 'a released lock cannot be extended')
  })

  test('release and extend after expiry resolve false', async () => {
    const handle = await lock.acquire('expired', 50)
    assert.ok(handle)
    await waitFor('the lock to expire on every node', async () =>
      (await cluster.values('redlock:expired')).every((value) => value === null))
    assert.equal(await lock.extend(handle, 10_000), false)
    assert.equal(await lock.release(handle), false)
    await cluster.settled('redlock:expired', [null, null, null])
  })

  test('after expiry another owner gets the lock, and the first release leaves it alone', async () => {
    const first = await lock.acquire('next', 50)
    assert.ok(first)
    const other = new DistributedLock({ redis_nodes: cluster.addresses, retry_count: 100, retry_delay_ms: 10 })
    const second = await other.acquire('next', 10_000)
    assert.ok(second)
    assert.equal(await lock.release(first), false)
    await cluster.settled('redlock:next', [second.value, second.value, second.value])
    await other.close()
  })

  test('a handle from another instance, a forged one, or none is rejected', async () => {
    const other = new DistributedLock({ redis_nodes: cluster.addresses })
    const foreign = await other.acquire('foreign-handle', 10_000)
    assert.ok(foreign)
    const forged = { ...foreign, resource: foreign.resource, resources: foreign.resources }
    for (const [what, handle] of [
      ['another instance', foreign],
      ['a forged object', forged],
      ['null', null],
      ['a string', 'redlock:foreign-handle'],
      ['undefined', undefined],
    ] as const) {
      for (const call of [() => lock.release(handle as never), () => lock.extend(handle as never)]) {
        await assert.rejects(call(), (error: NodeJS.ErrnoException) => {
          assert.equal(error.code, 'ERR_INVALID_ARG', what)
          assert.match(error.message, /handle/)
          return true
        })
      }
    }
    await cluster.settled('redlock:foreign-handle', [foreign.value, foreign.value, foreign.value])
    assert.equal(await foreign.release(), true)
    await other.close()
  })

  test('a bad TTL for extend is rejected', async () => {
    const handle = await lock.acquire('bad-ttl', 10_000)
    assert.ok(handle)
    for (const ttl of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 1e20, '100']) {
      await assert.rejects(lock.extend(handle, ttl as number), { code: 'ERR_INVALID_ARG', message: /ttlMs/ })
    }
  })
})

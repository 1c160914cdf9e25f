import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { useCluster } from './helpers/fixture'
import { waitFor } from './helpers/redis'

describe('extend and release', () => {
  const t = useCluster(3, { lock: { retry_count: 0 }, flush: 'each' })

  test('extend sets the new TTL on every node and recomputes the validity', async () => {
    const handle = await t.lock.acquire('extend', 2_000)
    assert.ok(handle)
    const before = handle.expiresAt
    assert.equal(await t.lock.extend(handle, 20_000), true)
    assert.ok(handle.validityMs > 19_000 && handle.validityMs <= 19_798, `validity ${handle.validityMs}`)
    assert.ok(handle.expiresAt > before + 15_000)
    await waitFor('every node to hold the new TTL', async () => (await t.cluster.pttls('redlock:extend')).every((pttl) => pttl > 19_000))
    await t.cluster.settled('redlock:extend', [handle.value, handle.value, handle.value])
  })

  test('an extend right after an acquire whose write still waits for a connecting node sets the new TTL there too', async () => {
    // A new instance connects with its first acquire; the paused node holds
    // its connection half-open, so the lock's write to it trails the grant.
    const fresh = t.newLock({ retry_count: 0, command_timeout_ms: 2_000 })
    const connecting = t.cluster.nodes[2]
    connecting.pause()
    try {
      const handle = await fresh.acquire('trailing', 2_000)
      assert.ok(handle)
      const extended = fresh.extend(handle, 20_000)
      setTimeout(() => connecting.resume(), 100)
      assert.equal(await extended, true)
      await waitFor('every node to hold the new TTL', async () => (await t.cluster.pttls('redlock:trailing')).every((pttl) => pttl > 19_000))
    } finally {
      connecting.resume()
    }
  })

  test('extend without a TTL renews for the TTL the lock was acquired with', async () => {
    const handle = await t.lock.acquire('renew', 5_000)
    assert.ok(handle)
    await t.cluster.nodes[0].redis().pexpire('redlock:renew', 1_000)
    assert.equal(await handle.extend(), true)
    await waitFor('every node to hold the renewed TTL', async () =>
      (await t.cluster.pttls('redlock:renew')).every((pttl) => pttl > 4_000 && pttl <= 5_000))
  })

  test('extend is false when a majority no longer holds our value, and touches no foreign key', async () => {
    const handle = await t.lock.acquire('lost', 10_000)
    assert.ok(handle)
    await t.cluster.nodes[0].redis().set('redlock:lost', 'foreign', 'PX', 3_000)
    await t.cluster.nodes[1].redis().del('redlock:lost')
    const validity = handle.validityMs
    assert.equal(await t.lock.extend(handle, 60_000), false)
    assert.equal(handle.validityMs, validity, 'a failed extend leaves the validity alone')
    await t.cluster.settled('redlock:lost', ['foreign', null, null])
    const [foreign] = await t.cluster.pttls('redlock:lost')
    assert.ok(foreign > 0 && foreign <= 3_000, 'the foreign key kept its TTL')
    assert.equal(await t.lock.release(handle), false, 'a lost lock has nothing left to release')
  })

  test('release deletes only its own value and reports whether a majority had it', async () => {
    const handle = await t.lock.acquire('mine', 10_000)
    assert.ok(handle)
    await t.cluster.nodes[2].redis().set('redlock:mine', 'foreign', 'PX', 10_000)
    assert.equal(await t.lock.release(handle), true)
    await t.cluster.settled('redlock:mine', [null, null, 'foreign'])
  })

  test('release is false when a majority holds another value', async () => {
    const handle = await t.lock.acquire('taken', 10_000)
    assert.ok(handle)
    await t.cluster.nodes[0].redis().set('redlock:taken', 'foreign', 'PX', 10_000)
    await t.cluster.nodes[1].redis().set('redlock:taken', 'foreign', 'PX', 10_000)
    assert.equal(await handle.release(), false)
    await t.cluster.settled('redlock:taken', ['foreign', 'foreign', null])
  })

  test('releasing twice resolves false the second time', async () => {
    const handle = await t.lock.acquire('twice', 10_000)
    assert.ok(handle)
    assert.equal(await t.lock.release(handle), true)
    assert.equal(await t.lock.release(handle), false)
    assert.equal(await t.lock.extend(handle), false, 'a released lock cannot be extended')
  })

  test('release and extend after expiry resolve false', async () => {
    const handle = await t.lock.acquire('expired', 50)
    assert.ok(handle)
    await waitFor('the lock to expire on every node', async () =>
      (await t.cluster.values('redlock:expired')).every((value) => value === null))
    assert.equal(await t.lock.extend(handle, 10_000), false)
    assert.equal(await t.lock.release(handle), false)
    await t.cluster.settled('redlock:expired', [null, null, null])
  })

  test('after expiry another owner gets the lock, and the first release leaves it alone', async () => {
    const first = await t.lock.acquire('next', 50)
    assert.ok(first)
    const other = t.newLock({ retry_count: 100, retry_delay_ms: 10 })
    const second = await other.acquire('next', 10_000)
    assert.ok(second)
    assert.equal(await t.lock.release(first), false)
    await t.cluster.settled('redlock:next', [second.value, second.value, second.value])
  })

  test('a handle from another instance, a forged one, or none is rejected', async () => {
    const other = t.newLock()
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
      for (const call of [() => t.lock.release(handle as never), () => t.lock.extend(handle as never)]) {
        await assert.rejects(call(), (error: NodeJS.ErrnoException) => {
          assert.equal(error.code, 'ERR_INVALID_ARG', what)
          assert.match(error.message, /handle/)
          return true
        })
      }
    }
    await t.cluster.settled('redlock:foreign-handle', [foreign.value, foreign.value, foreign.value])
    assert.equal(await foreign.release(), true)
  })

  test('a bad TTL for extend is rejected', async () => {
    const handle = await t.lock.acquire('bad-ttl', 10_000)
    assert.ok(handle)
    for (const ttl of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 1e20, '100']) {
      await assert.rejects(t.lock.extend(handle, ttl as number), { code: 'ERR_INVALID_ARG', message: /ttlMs/ })
    }
  })
})

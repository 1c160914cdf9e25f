import assert from 'node:assert/strict'
import { after, before, beforeEach, describe, test } from 'node:test'

import { DistributedLock, LockHandle } from '..'
import { Cluster, waitFor } from './helpers/redis'

describe('acquire', () => {
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

  test('grants a handle and writes the value with the TTL on every node', async () => {
    const handle = await lock.acquire('orders', 10_000)
    assert.ok(handle instanceof LockHandle)
    assert.equal(handle.resource, 'orders')
    assert.deepEqual(handle.resources, ['orders'])
    assert.match(handle.value, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    assert.equal(handle.attempts, 1)
    // 10000 - elapsed - (10000 * 0.01 + 2)
    assert.ok(handle.validityMs > 9_800 && handle.validityMs <= 9_898, `validity ${handle.validityMs}`)
    assert.ok(Math.abs(handle.expiresAt - (Date.now() + handle.validityMs)) < 1_000)
    await cluster.settled('redlock:orders', [handle.value, handle.value, handle.value])
    for (const pttl of await cluster.pttls('redlock:orders')) assert.ok(pttl > 9_000 && pttl <= 10_000, `pttl ${pttl}`)
  })

  test('uses lock_ttl_ms when no TTL is given, and a fresh value per acquisition', async () => {
    const short = new DistributedLock({ redis_nodes: cluster.addresses, lock_ttl_ms: 4_000 })
    const first = await short.acquire('a')
    const second = await short.acquire('b')
    assert.ok(first && second)
    assert.notEqual(first.value, second.value)
    await cluster.settled('redlock:a', [first.value, first.value, first.value])
    for (const pttl of await cluster.pttls('redlock:a')) assert.ok(pttl > 3_000 && pttl <= 4_000, `pttl ${pttl}`)
    await short.close()
  })

  test('a second owner gets null after exactly retry_count retries', async () => {
    const holder = await lock.acquire('contended', 10_000)
    assert.ok(holder)
    const other = new DistributedLock({ redis_nodes: cluster.addresses, retry_count: 2, retry_delay_ms: 10, retry_jitter_ms: 0 })
    await cluster.settled('redlock:contended', [holder.value, holder.value, holder.value])
    const setsSince = async (start: number[]) => (await cluster.calls('set')).map((n, i) => n - start[i])
    const before = await cluster.calls('set')
    assert.equal(await other.acquire('contended', 10_000), null)
    // The last refusal may still be on its way from the third node.
    await waitFor('three SETs per node', async () => (await setsSince(before)).every((n) => n >= 3))
    assert.deepEqual(await setsSince(before), [3, 3, 3], 'one SET per attempt per node')
    const after = await cluster.calls('set')
    assert.equal(await other.acquire('contended', 10_000, { retry_count: 0 }), null)
    await waitFor('one SET per node', async () => (await setsSince(after)).every((n) => n >= 1))
    assert.deepEqual(await setsSince(after), [1, 1, 1])
    await cluster.settled('redlock:contended', [holder.value, holder.value, holder.value])
    await other.close()
  })

  test('a retry succeeds once the holder releases', async () => {
    const holder = await lock.acquire('handover', 10_000)
    assert.ok(holder)
    const other = new DistributedLock({ redis_nodes: cluster.addresses, retry_count: 50, retry_delay_ms: 20, retry_jitter_ms: 5 })
    const waiting = other.acquire('handover', 10_000)
    setTimeout(() => void lock.release(holder), 60)
    const next = await waiting
    assert.ok(next, 'acquired after the release')
    assert.ok(next.attempts > 1, `attempts ${next.attempts}`)
    await other.close()
  })

  test('a list of resources is locked all-or-nothing', async () => {
    const b = await lock.acquire('b', 10_000)
    assert.ok(b)
    assert.equal(await lock.acquire(['a', 'b', 'c'], 10_000), null)
    for (const key of ['redlock:a', 'redlock:c']) {
      await cluster.settled(key, [null, null, null])
    }
    assert.ok(await lock.release(b))
    const all = await lock.acquire(['a', 'b', 'c'], 10_000)
    assert.ok(all)
    assert.equal(all.resource, 'a')
    assert.deepEqual(all.resources, ['a', 'b', 'c'])
    for (const key of ['redlock:a', 'redlock:b', 'redlock:c']) {
      await cluster.settled(key, [all.value, all.value, all.value])
    }
    assert.equal(await lock.release(all), true)
    for (const key of ['redlock:a', 'redlock:b', 'redlock:c']) {
      await cluster.settled(key, [null, null, null])
    }
  })

  test('a TTL shorter than the round trip never yields a handle and leaves no key', async () => {
    for (const ttl of [1, 2, 3]) {
      assert.equal(await lock.acquire(`short-${ttl}`, ttl, { retry_count: 2, retry_delay_ms: 0, retry_jitter_ms: 0 }), null)
    }
    for (const ttl of [1, 2, 3]) {
      await cluster.settled(`redlock:short-${ttl}`, [null, null, null])
    }
  })

  test('a failed attempt removes its own keys so that a retry is not blocked by them', async () => {
    // Node 0 holds a foreign value: our attempt wins nodes 1 and 2 only if it
    // is not blocked by leftovers of an earlier attempt of ours.
    await cluster.nodes[0].redis().set('redlock:partial', 'foreign', 'PX', 10_000)
    await cluster.nodes[1].redis().set('redlock:partial', 'foreign', 'PX', 10_000)
    assert.equal(await lock.acquire('partial', 10_000), null)
    await cluster.settled('redlock:partial', ['foreign', 'foreign', null])
    await cluster.nodes[1].redis().del('redlock:partial')
    const handle = await lock.acquire('partial', 10_000)
    assert.ok(handle)
    await cluster.settled('redlock:partial', ['foreign', handle.value, handle.value])
  })

  test('key_prefix applies to every key', async () => {
    const prefixed = new DistributedLock({ redis_nodes: cluster.addresses, key_prefix: 'app:locks:' })
    const handle = await prefixed.acquire('job')
    assert.ok(handle)
    await cluster.settled('app:locks:job', [handle.value, handle.value, handle.value])
    await prefixed.close()
  })

  test('many concurrent acquisitions of one resource yield at most one owner', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, () => lock.acquire('race', 10_000)))
    const owners = results.filter((h) => h !== null)
    assert.ok(owners.length <= 1, `${owners.length} owners`)
    for (const owner of owners) await cluster.settled('redlock:race', [owner.value, owner.value, owner.value])
  })
})

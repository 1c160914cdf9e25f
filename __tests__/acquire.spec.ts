import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { LockHandle } from '..'
import { useCluster } from './helpers/fixture'
import { waitFor } from './helpers/redis'

describe('acquire', () => {
  const t = useCluster(3, { lock: { retry_count: 0 }, flush: 'each' })

  test('grants a handle and writes the value with the TTL on every node', async () => {
    const handle = await t.lock.acquire('orders', 10_000)
    assert.ok(handle instanceof LockHandle)
    assert.equal(handle.resource, 'orders')
    assert.deepEqual(handle.resources, ['orders'])
    assert.match(handle.value, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    assert.equal(handle.attempts, 1)
    // 10000 - elapsed - (10000 * 0.01 + 2)
    assert.ok(handle.validityMs > 9_800 && handle.validityMs <= 9_898, `validity ${handle.validityMs}`)
    assert.ok(Math.abs(handle.expiresAt - (Date.now() + handle.validityMs)) < 1_000)
    await t.cluster.settled('redlock:orders', [handle.value, handle.value, handle.value])
    for (const pttl of await t.cluster.pttls('redlock:orders')) assert.ok(pttl > 9_000 && pttl <= 10_000, `pttl ${pttl}`)
  })

  test('expiresAt comes the drift allowance before the keys expire on the nodes, after an extend too', async () => {
    // 10000 * 0.01 + 2: what the lock keeps between its validity and the keys' own TTL.
    const drift = 102
    const earliestExpiry = async () =>
      Math.min(...(await Promise.all(t.cluster.nodes.map((node) => node.redis().call('PEXPIRETIME', 'redlock:expiry') as Promise<number>))))
    const handle = await t.lock.acquire('expiry', 10_000)
    assert.ok(handle)
    await t.cluster.settled('redlock:expiry', [handle.value, handle.value, handle.value])
    const acquired = await earliestExpiry()
    assert.ok(handle.expiresAt + drift <= acquired, `expiresAt ${handle.expiresAt} + ${drift} > ${acquired}`)
    assert.ok(acquired - (handle.expiresAt + drift) < 1_000, `expiresAt ${handle.expiresAt} is ${acquired - handle.expiresAt} ms before the keys expire`)
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(await t.lock.extend(handle, 10_000), true)
    const extended = await earliestExpiry()
    assert.ok(extended > acquired)
    assert.ok(handle.expiresAt + drift <= extended, `expiresAt ${handle.expiresAt} + ${drift} > ${extended}`)
  })

  test('uses lock_ttl_ms when no TTL is given, and a fresh value per acquisition', async () => {
    const short = t.newLock({ lock_ttl_ms: 4_000 })
    const first = await short.acquire('a')
    const second = await short.acquire('b')
    assert.ok(first && second)
    assert.notEqual(first.value, second.value)
    await t.cluster.settled('redlock:a', [first.value, first.value, first.value])
    for (const pttl of await t.cluster.pttls('redlock:a')) assert.ok(pttl > 3_000 && pttl <= 4_000, `pttl ${pttl}`)
  })

  test('a second owner gets null after exactly retry_count retries', async () => {
    const holder = await t.lock.acquire('contended', 10_000)
    assert.ok(holder)
    const other = t.newLock({ retry_count: 2, retry_delay_ms: 10, retry_jitter_ms: 0 })
    await t.cluster.settled('redlock:contended', [holder.value, holder.value, holder.value])
    const setsSince = async (start: number[]) => (await t.cluster.calls('set')).map((n, i) => n - start[i])
    const before = await t.cluster.calls('set')
    assert.equal(await other.acquire('contended', 10_000), null)
    // The last refusal may still be on its way from the third node.
    await waitFor('three SETs per node', async () => (await setsSince(before)).every((n) => n >= 3))
    assert.deepEqual(await setsSince(before), [3, 3, 3], 'one SET per attempt per node')
    const after = await t.cluster.calls('set')
    assert.equal(await other.acquire('contended', 10_000, { retry_count: 0 }), null)
    await waitFor('one SET per node', async () => (await setsSince(after)).every((n) => n >= 1))
    assert.deepEqual(await setsSince(after), [1, 1, 1])
    await t.cluster.settled('redlock:contended', [holder.value, holder.value, holder.value])
  })

  test('a retry succeeds once the holder releases', async () => {
    const holder = await t.lock.acquire('handover', 10_000)
    assert.ok(holder)
    const other = t.newLock({ retry_count: 50, retry_delay_ms: 20, retry_jitter_ms: 5 })
    const waiting = other.acquire('handover', 10_000)
    setTimeout(() => void t.lock.release(holder), 60)
    const next = await waiting
    assert.ok(next, 'acquired after the release')
    assert.ok(next.attempts > 1, `attempts ${next.attempts}`)
  })

  test('a list of resources is locked all-or-nothing', async () => {
    const b = await t.lock.acquire('b', 10_000)
    assert.ok(b)
    assert.equal(await t.lock.acquire(['a', 'b', 'c'], 10_000), null)
    for (const key of ['redlock:a', 'redlock:c']) {
      await t.cluster.settled(key, [null, null, null])
    }
    assert.ok(await t.lock.release(b))
    const all = await t.lock.acquire(['a', 'b', 'c'], 10_000)
    assert.ok(all)
    assert.equal(all.resource, 'a')
    assert.deepEqual(all.resources, ['a', 'b', 'c'])
    for (const key of ['redlock:a', 'redlock:b', 'redlock:c']) {
      await t.cluster.settled(key, [all.value, all.value, all.value])
    }
    assert.equal(await t.lock.release(all), true)
    for (const key of ['redlock:a', 'redlock:b', 'redlock:c']) {
      await t.cluster.settled(key, [null, null, null])
    }
  })

  test('a TTL shorter than the round trip never yields a handle and leaves no key', async () => {
    for (const ttl of [1, 2, 3]) {
      assert.equal(await t.lock.acquire(`short-${ttl}`, ttl, { retry_count: 2, retry_delay_ms: 0, retry_jitter_ms: 0 }), null)
    }
    for (const ttl of [1, 2, 3]) {
      await t.cluster.settled(`redlock:short-${ttl}`, [null, null, null])
    }
  })

  test('a failed attempt removes its own keys so that a retry is not blocked by them', async () => {
    // Node 0 holds a foreign value: our attempt wins nodes 1 and 2 only if it
    // is not blocked by leftovers of an earlier attempt of ours.
    await t.cluster.nodes[0].redis().set('redlock:partial', 'foreign', 'PX', 10_000)
    await t.cluster.nodes[1].redis().set('redlock:partial', 'foreign', 'PX', 10_000)
    assert.equal(await t.lock.acquire('partial', 10_000), null)
    await t.cluster.settled('redlock:partial', ['foreign', 'foreign', null])
    await t.cluster.nodes[1].redis().del('redlock:partial')
    const handle = await t.lock.acquire('partial', 10_000)
    assert.ok(handle)
    await t.cluster.settled('redlock:partial', ['foreign', handle.value, handle.value])
  })

  test('key_prefix applies to every key', async () => {
    const prefixed = t.newLock({ key_prefix: 'app:locks:' })
    const handle = await prefixed.acquire('job')
    assert.ok(handle)
    await t.cluster.settled('app:locks:job', [handle.value, handle.value, handle.value])
  })

  test('many concurrent acquisitions of one resource yield at most one owner', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, () => t.lock.acquire('race', 10_000)))
    const owners = results.filter((h) => h !== null)
    assert.ok(owners.length <= 1, `${owners.length} owners`)
    for (const owner of owners) await t.cluster.settled('redlock:race', [owner.value, owner.value, owner.value])
  })
})

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import type { LockError } from '..'
import { useCluster } from './helpers/fixture'

describe('fence counters: where they live, and exact tokens beyond 2^53', () => {
  const t = useCluster(3, { flush: 'each', lock: { retry_count: 0 } })

  const setEverywhere = (key: string, value: string) => Promise.all(t.cluster.nodes.map((node) => node.redis().set(key, value)))

  async function fencedToken(resource: string): Promise<bigint> {
    const handle = await t.lock.acquire(resource, 5_000, { fencing: true })
    assert.ok(handle?.fencingToken, `no token for ${resource}`)
    assert.equal(await t.lock.release(handle), true)
    return handle.fencingToken
  }

  test('the counter of a resource is <key_prefix>fence:<resource>, and has no TTL', async () => {
    // Connections open first, and the counters are looked at while the lock
    // is held: on a node still connecting, the raising of the counter can
    // overtake the write of the lock (or a release overtake the raising),
    // and that node then keeps its last counter. That is safe (a majority
    // holds the token) but not what this test looks at.
    assert.equal((await t.lock.health()).quorumReachable, true)
    const handle = await t.lock.acquire('invoices', 5_000, { fencing: true })
    assert.ok(handle?.fencingToken)
    await t.cluster.settled('redlock:fence:invoices', Array(3).fill(String(handle.fencingToken)))
    assert.deepEqual(await t.cluster.pttls('redlock:fence:invoices'), [-1, -1, -1])
    assert.equal(await t.lock.release(handle), true)
    const bare = t.newLock({ key_prefix: '', retry_count: 0 })
    assert.equal((await bare.health()).quorumReachable, true)
    const plain = await bare.acquire('bare', 5_000, { fencing: true })
    assert.ok(plain?.fencingToken)
    await t.cluster.settled('fence:bare', Array(3).fill(String(plain.fencingToken)))
    assert.equal(await bare.release(plain), true)
  })

  test('a counter raised past 2^53 by hand gives exactly the next integers', async () => {
    await setEverywhere('redlock:fence:r', '9007199254740993')
    assert.equal(await fencedToken('r'), 9007199254740994n)
    assert.equal(await fencedToken('r'), 9007199254740995n)
    await t.cluster.settled('redlock:fence:r', Array(3).fill('9007199254740995'))
    // Doubles near 2^60 are 256 apart.
    await setEverywhere('redlock:fence:far', '1152921504606846977')
    assert.equal(await fencedToken('far'), 1152921504606846978n)
    assert.equal(await fencedToken('far'), 1152921504606846979n)
  })

  test('the largest token is 2^64 - 1; a counter there is a clear error, not a wrap', async () => {
    await setEverywhere('redlock:fence:top', '18446744073709551614')
    assert.equal(await fencedToken('top'), 18446744073709551615n)
    for (const counter of ['18446744073709551615', '18446744073709551616', '99999999999999999999999999']) {
      await setEverywhere('redlock:fence:top', counter)
      await assert.rejects(t.lock.acquire('top', 5_000, { fencing: true }), (error: LockError) => {
        assert.equal(error.code, 'ERR_QUORUM_UNAVAILABLE')
        // Decided once a majority failed; the last node may not have answered yet.
        assert.ok(error.nodeErrors!.length >= 2, JSON.stringify(error.nodeErrors))
        for (const nodeError of error.nodeErrors!) assert.match(nodeError.message, /redlock:fence:top.*no larger token fits in 64 bits/)
        return true
      })
      await t.cluster.settled('redlock:top', [null, null, null])
      await t.cluster.settled('redlock:fence:top', Array(3).fill(counter))
    }
  })

  test('a counter with leading zeros counts by its value; one that is not a number is replaced', async () => {
    await setEverywhere('redlock:fence:padded', '0009007199254740993')
    assert.equal(await fencedToken('padded'), 9007199254740994n)
    await setEverywhere('redlock:fence:garbled', 'not a number')
    const [seconds] = await t.cluster.nodes[0].redis().time()
    const token = await fencedToken('garbled')
    assert.ok(token >= BigInt(seconds) * 1_000_000n, `${token}`)
    await t.cluster.settled('redlock:fence:garbled', Array(3).fill(String(token)))
  })

  test('counters at the old key fence:<key_prefix><resource> are honoured as a floor, exactly', async () => {
    await setEverywhere('fence:redlock:upgraded', '9007199254740993')
    assert.equal(await fencedToken('upgraded'), 9007199254740994n)
    await t.cluster.settled('redlock:fence:upgraded', Array(3).fill('9007199254740994'))
    assert.deepEqual(await t.cluster.values('fence:redlock:upgraded'), Array(3).fill('9007199254740993'), 'the old counter is only read')
    assert.equal(await fencedToken('upgraded'), 9007199254740995n)
    // The larger of the two counts.
    await setEverywhere('fence:redlock:upgraded', '9007199254741000')
    assert.equal(await fencedToken('upgraded'), 9007199254741001n)
  })

  test('a user who may not read the old counters is neither refused nor logged as refused', async () => {
    await setEverywhere('fence:redlock:unreadable', '9007199254740993')
    for (const node of t.cluster.nodes) {
      await node.redis().call('ACL', 'SETUSER', 'keyed', 'reset', 'on', '>fence-spec-password', '~redlock:*', '&redlock:*', '+@all')
      await node.redis().call('ACL', 'LOG', 'RESET')
    }
    const keyed = t.newLock({
      redis_nodes: t.cluster.nodes.map((node) => ({ host: '127.0.0.1', port: node.port, username: 'keyed', password: 'fence-spec-password' })),
      retry_count: 0,
    })
    const handle = await keyed.acquire('unreadable', 5_000, { fencing: true })
    assert.ok(handle?.fencingToken)
    assert.ok(handle.fencingToken < 9007199254740993n, 'the old counter could not be read')
    assert.equal(await keyed.release(handle), true)
    for (const node of t.cluster.nodes) assert.deepEqual(await node.redis().call('ACL', 'LOG'), [])
  })

  test('a resource named fence:<anything> is refused: that name is the counter of another resource', async () => {
    for (const call of [
      () => t.lock.acquire('fence:invoices', 5_000),
      () => t.lock.acquire(['a', 'fence:b'], 5_000, { fencing: true }),
      () => t.lock.inspect('fence:invoices'),
    ]) {
      await assert.rejects(call(), (error: LockError) => {
        assert.equal(error.code, 'ERR_INVALID_ARG')
        assert.match(error.message, /'fence:.*counter/)
        return true
      })
    }
    const handle = await t.lock.acquire('fenced:ok', 5_000)
    assert.ok(handle, 'a name that only starts alike is fine')
    await t.lock.release(handle)
  })
})

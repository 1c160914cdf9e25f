// The bad-input catalogue: every option of the contract with each wrong
// type, out-of-range and edge value, and every call with the arguments a
// caller can get wrong. Each must give an Error with the contract's code and
// a message naming the problem; never a crash, a hang, or a key without TTL.

import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'

import { DistributedLock, type LockError, type LockHandle } from '..'
import { useCluster } from './helpers/fixture'

const NODES = ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3']
/** Values no numeric option takes. */
const NOT_NUMBERS: unknown[] = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e20, '100', '', null, true, {}, [], 1.5]

const describeValue = (value: unknown) =>
  typeof value === 'number' ? String(value) : typeof value === 'string' ? `'${value}'` : JSON.stringify(value)

function constructError(options: Record<string, unknown>): LockError | null {
  try {
    void new DistributedLock(options).close()
    return null
  } catch (error) {
    return error as LockError
  }
}

/** Constructor options: [key, values it must reject, edge values it must accept]. */
const LOCK_OPTIONS: [string, unknown[], unknown[]][] = [
  ['lock_ttl_ms', [...NOT_NUMBERS, 0, -1, 2 ** 31], [1, 2 ** 31 - 1]],
  ['retry_count', [...NOT_NUMBERS, -2, 1_000_001], [-1, 0, 1_000_000]],
  ['retry_delay_ms', [...NOT_NUMBERS, -1, 600_001], [0, 600_000]],
  ['retry_jitter_ms', [...NOT_NUMBERS, -1, 600_001], [0, 600_000]],
  ['drift_factor', [Number.NaN, Number.POSITIVE_INFINITY, 1e20, '0.01', null, true, -0.01, 0.51], [0, 0.5]],
  ['key_prefix', [0, null, true, {}, []], ['', 'ünïcødé:']],
  ['connect_timeout_ms', [...NOT_NUMBERS, 0, -1], [1]],
  ['command_timeout_ms', [...NOT_NUMBERS, 0, -1], [1]],
  ['restart_quarantine', [0, 1, 'true', null, {}], [true, false]],
  ['max_ttl_ms', [...NOT_NUMBERS, 0, -1, 2 ** 31], [1, 2 ** 31 - 1]],
  [
    'redis_nodes',
    ['a:1', [], ['a:1', 'a:1'], ['a:1', 'redis://a:1'], ['a:0'], ['a:65536'], ['a:-1'], ['a:1.5'], ['a:x'], [''], ['not a node'],
      ['a:1:2'], ['ftp://a'], ['redis://'], [6379], [null], [{}], [{ port: 1 }], [{ host: 'a', port: 65536 }], [{ host: 'a', port: '1' }],
      [{ host: 'a', ssl: 'yes' }], [{ host: 'a', db: -1 }], [{ host: 'a', colour: 1 }], Array.from({ length: 16 }, (_, i) => `h:${i + 1}`)],
    [['a'], ['[::1]:6380'], ['rediss://u:p@h:6380/2'], [{ host: 'a', port: 65535 }]],
  ],
]

describe('bad input: constructor options', () => {
  for (const [key, rejected, accepted] of LOCK_OPTIONS) {
    for (const value of rejected) {
      test(`${key} = ${describeValue(value)} is rejected, naming the key`, () => {
        const options = key === 'redis_nodes' ? { redis_nodes: value } : { redis_nodes: NODES, [key]: value }
        const error = constructError(options)
        assert.ok(error instanceof Error, 'rejected')
        assert.equal(error.code, 'ERR_INVALID_ARG')
        assert.match(error.message, new RegExp(key), error.message)
      })
    }
    test(`${key} accepts its edge values ${accepted.map(describeValue).join(', ')}`, () => {
      for (const value of accepted) {
        const options = key === 'redis_nodes' ? { redis_nodes: value } : { redis_nodes: NODES, [key]: value }
        assert.equal(constructError(options), null, describeValue(value))
      }
    })
  }

  test('unknown keys, both spellings, and options that are not an object', () => {
    for (const [options, message] of [
      [{ lock_ttl: 1 }, /'lock_ttl'.*did you mean 'lock_ttl_ms'/],
      [{ lockTtl: 1 }, /did you mean 'lock_ttl_ms'/],
      [{ '': 1 }, /known keys are/],
      [{ wait_ms: 1 }, /option of acquire\(\)/],
      [{ metadata: {} }, /option of acquire\(\)/],
      [{ retry_count: 1, retryCount: 1 }, /given twice/],
    ] as [Record<string, unknown>, RegExp][]) {
      const error = constructError({ redis_nodes: NODES, ...options })
      assert.equal(error?.code, 'ERR_INVALID_ARG')
      assert.match(error!.message, message)
    }
    for (const options of [null, 0, 'a:1', [NODES], () => {}]) {
      assert.equal(constructError(options as never)?.code, 'ERR_INVALID_ARG', describeValue(options))
    }
  })
})

describe('bad input: calls', () => {
  const t = useCluster(3, { lock: { retry_count: 0 } })
  let other: DistributedLock

  before(() => {
    other = t.newLock({ retry_count: 0 })
  })

  /** Rejects with ERR_INVALID_ARG and a message matching `message`. */
  async function invalid(call: () => Promise<unknown>, message: RegExp): Promise<void> {
    await assert.rejects(call(), (error: LockError) => {
      assert.ok(error instanceof Error)
      assert.equal(error.code, 'ERR_INVALID_ARG')
      assert.match(error.message, message)
      return true
    })
  }

  /** No key of this library without a TTL on any node. */
  async function everyKeyHasATtl(): Promise<void> {
    for (const node of t.cluster.nodes) {
      for (const key of await node.redis().keys('redlock:*')) {
        assert.notEqual(await node.redis().pttl(key), -1, `${key} has no TTL`)
      }
    }
  }

  test('acquire options: each wrong type and range names the option', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      ...NOT_NUMBERS.map((value): [Record<string, unknown>, RegExp] => [{ retry_count: value }, /'retry_count'/]),
      ...NOT_NUMBERS.map((value): [Record<string, unknown>, RegExp] => [{ retry_delay_ms: value }, /'retry_delay_ms'/]),
      ...NOT_NUMBERS.map((value): [Record<string, unknown>, RegExp] => [{ retryJitterMs: value }, /'retryJitterMs'/]),
      ...NOT_NUMBERS.map((value): [Record<string, unknown>, RegExp] => [{ wait_ms: value }, /'wait_ms'/]),
      [{ wait_ms: -1 }, /'wait_ms'/],
      [{ auto_extend: 1 }, /'auto_extend'.*boolean/],
      [{ fencing: 'yes' }, /'fencing'.*boolean/],
      [{ metadata: 'us-east-1' }, /'metadata'.*object of strings/],
      [{ metadata: { pid: 42 } }, /'metadata.pid'.*string/],
      [{ metadata: { blob: 'x'.repeat(10_000) } }, /'metadata'.*at most 8192/],
      [{ lock_ttl_ms: 1 }, /option of the DistributedLock constructor/],
      [{ retries: 1 }, /'retries'/],
    ]
    for (const [options, message] of cases) await invalid(() => t.lock.acquire('x', 1_000, options), message)
    await assert.rejects(t.lock.acquire('x', 1_000, { signal: 'stop' as never }), { code: 'ERR_INVALID_ARG', message: /'signal'.*AbortSignal/ })
  })

  test('TTLs: each wrong type and range', async () => {
    for (const ttl of [...NOT_NUMBERS.filter((v) => v !== null && typeof v !== 'object'), 0, -1, 2 ** 31]) {
      await invalid(() => t.lock.acquire('x', ttl as never), /ttlMs/)
    }
    const handle = await t.lock.acquire('ttl-checks', 5_000)
    assert.ok(handle)
    for (const ttl of [0, -1, Number.NaN, '100', 2 ** 31]) await invalid(() => t.lock.extend(handle, ttl as never), /ttlMs/)
    await t.lock.release(handle)
  })

  test('resources: empty, not strings, lists gone wrong, in acquire and inspect', async () => {
    for (const resource of ['', 42, null, undefined, true, {}, [], ['a', 'a'], ['a', ''], ['a', 7]]) {
      await invalid(() => t.lock.acquire(resource as never, 1_000), /resource/)
    }
    for (const resource of ['', 42, null, ['a', 'b']]) await invalid(() => t.lock.inspect(resource as never), /resource|one resource/)
  })

  test('resources that are 1 MB long or full of unicode and control characters work, and leave keys with a TTL', async () => {
    for (const resource of ['\u0000\u0001\u001b[31m\r\n', 'ünïcødé 锁 🔒 \u202e', 'k'.repeat(1 << 20)]) {
      const handle = await t.lock.acquire(resource, 5_000)
      assert.ok(handle)
      assert.equal(await other.acquire(resource, 5_000), null)
      assert.equal((await other.inspect(resource)).holder, handle.value)
      await everyKeyHasATtl()
      assert.equal(await t.lock.release(handle), true)
    }
  })

  test('handles: null, forged, from another instance, released twice, extended after expiry', async () => {
    const handle = await t.lock.acquire('handles', 200)
    assert.ok(handle)
    const forged = { ...handle, resource: 'handles' } as unknown as LockHandle
    for (const bad of [null, undefined, 42, 'handles', {}, forged]) {
      await invalid(() => t.lock.release(bad as never), /handle must be a LockHandle/)
      await invalid(() => t.lock.extend(bad as never), /handle must be a LockHandle/)
    }
    await invalid(() => other.release(handle), /another DistributedLock instance/)
    await invalid(() => other.extend(handle), /another DistributedLock instance/)
    await new Promise((resolve) => setTimeout(resolve, 300))
    assert.equal(await t.lock.extend(handle), false, 'extended after expiry')
    assert.equal(handle.signal.aborted, true)
    assert.equal(await t.lock.release(handle), false)
    assert.equal(await t.lock.release(handle), false, 'released twice')
    await everyKeyHasATtl()
  })

  test('calls after close reject with ERR_LOCK_CLOSED', async () => {
    const closing = t.newLock()
    const handle = await closing.acquire('closing', 5_000)
    assert.ok(handle)
    await closing.close()
    const calls: (() => Promise<unknown>)[] = [
      () => closing.acquire('x'),
      () => closing.extend(handle),
      () => closing.release(handle),
      () => handle.extend(),
      () => closing.using('x', async () => 1),
      () => closing.inspect('x'),
      () => closing.health(),
    ]
    for (const call of calls) await assert.rejects(call(), { code: 'ERR_LOCK_CLOSED', message: /closed/ })
    await closing.close()
  })

  test('close() with 10,000 acquires in flight: every one settles, nothing is left held or without TTL', async () => {
    const busy = t.newLock({ retry_count: -1, retry_delay_ms: 20 })
    const holder = await other.acquire('contended-close', 10_000)
    assert.ok(holder)
    const inFlight = Promise.allSettled(
      Array.from({ length: 10_000 }, (_, i) => busy.acquire(i % 2 === 0 ? `close-${i}` : 'contended-close', 10_000)),
    )
    await new Promise((resolve) => setTimeout(resolve, 20))
    await busy.close()
    const settled = await inFlight
    for (const result of settled) {
      if (result.status === 'rejected') assert.equal((result.reason as LockError).code, 'ERR_LOCK_CLOSED')
      else assert.match(result.value?.resource ?? 'null', /^close-/, 'only free resources were won, and close released them')
    }
    for (const node of t.cluster.nodes) {
      const left = (await node.redis().keys('redlock:close-*')).length
      assert.equal(left, 0, `${left} locks of the closed instance left on ${node.address}`)
    }
    await everyKeyHasATtl()
    await other.release(holder)
  })
})

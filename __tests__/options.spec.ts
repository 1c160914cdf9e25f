import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'

import { DistributedLock, type LockError } from '..'
import { useCluster } from './helpers/fixture'

function construct(options: unknown): LockError {
  try {
    new DistributedLock(options as never)
  } catch (error) {
    return error as LockError
  }
  assert.fail(`accepted ${JSON.stringify(options)}`)
}

describe('options', () => {
  const nodes = ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3']

  test('every option in both spellings is accepted', () => {
    const full = {
      redis_nodes: nodes,
      lock_ttl_ms: 10_000,
      retry_count: -1,
      retry_delay_ms: 0,
      retry_jitter_ms: 0,
      drift_factor: 0,
      key_prefix: '',
      connect_timeout_ms: 100,
      command_timeout_ms: 100,
    }
    const camel = Object.fromEntries(
      Object.entries(full).map(([key, value]) => [key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()), value]),
    )
    void new DistributedLock(full).close()
    void new DistributedLock(camel).close()
    void new DistributedLock().close()
    void new DistributedLock({ redis_nodes: nodes, lock_ttl_ms: undefined }).close()
  })

  test('node strings and objects of every form', () => {
    const lock = new DistributedLock({
      redis_nodes: [
        'localhost',
        'localhost:6390',
        '[::1]:6391',
        'redis://user:pass@localhost:6392/3',
        'rediss://:pass@cache.example.com:6380',
        { host: 'a.example.com' },
        { host: 'b.example.com', port: 6380, password: 'k', ssl: true, db: 1, username: 'u' },
      ],
    })
    void lock.close()
  })

  const catalogue: [string, unknown, RegExp][] = [
    ['lock_ttl', 1000, /'lock_ttl'.*did you mean 'lock_ttl_ms'/],
    ['retryCont', 1, /did you mean 'retry_count'/],
    ['colour', 1, /'colour'.*known keys are/],
    ['lock_ttl_ms', '30000', /'lock_ttl_ms'.*must be a number, got string '30000'/],
    ['lock_ttl_ms', 0, /'lock_ttl_ms'.*from 1 to 2147483647/],
    ['lock_ttl_ms', -1, /'lock_ttl_ms'/],
    ['lock_ttl_ms', Number.NaN, /'lock_ttl_ms'.*integer/],
    ['lock_ttl_ms', Number.POSITIVE_INFINITY, /'lock_ttl_ms'/],
    ['lock_ttl_ms', 1e20, /'lock_ttl_ms'/],
    ['lock_ttl_ms', 2 ** 31, /'lock_ttl_ms'/],
    ['lock_ttl_ms', 1.5, /'lock_ttl_ms'.*integer/],
    ['lock_ttl_ms', null, /'lock_ttl_ms'.*got null/],
    ['lockTtlMs', true, /'lockTtlMs'/],
    ['retry_count', -2, /'retry_count'.*-1 \(no limit\)/],
    ['retry_count', 0.5, /'retry_count'/],
    ['retry_count', '3', /'retry_count'/],
    ['retry_delay_ms', -1, /'retry_delay_ms'/],
    ['retry_delay_ms', 1e9, /'retry_delay_ms'/],
    ['retry_jitter_ms', {}, /'retry_jitter_ms'/],
    ['drift_factor', 1, /'drift_factor'/],
    ['drift_factor', -0.1, /'drift_factor'/],
    ['key_prefix', 1, /'key_prefix'.*string/],
    ['connect_timeout_ms', 0, /'connect_timeout_ms'/],
    ['command_timeout_ms', Number.NaN, /'command_timeout_ms'/],
    ['redis_nodes', 'localhost:6379', /'redis_nodes'.*array/],
    ['redis_nodes', [], /redis_nodes.*at least one node/],
    ['redis_nodes', ['a:1', 'a:1'], /redis_nodes.*a:1 is listed twice/],
    ['redis_nodes', ['a:0'], /'redis_nodes'.*port/],
    ['redis_nodes', ['a:65536'], /'redis_nodes'.*port/],
    ['redis_nodes', ['not a node'], /'redis_nodes'.*not a host name/],
    ['redis_nodes', ['::1'], /'redis_nodes'.*brackets/],
    ['redis_nodes', ['ftp://a'], /'redis_nodes'.*scheme/],
    ['redis_nodes', [6379], /'redis_nodes'.*entry 0/],
    ['redis_nodes', [null], /'redis_nodes'.*entry 0/],
    ['redis_nodes', [{ port: 1 }], /'redis_nodes'.*host/],
    ['redis_nodes', [{ host: 'a', prot: 1 }], /'redis_nodes'.*'prot'.*did you mean 'port'/],
    ['redis_nodes', [{ host: 'a', port: 0 }], /'redis_nodes'.*port/],
    ['redis_nodes', [{ host: 'a', tls: 'yes' }], /'redis_nodes'.*'tls'.*boolean/],
    ['redis_nodes', Array.from({ length: 16 }, (_, i) => `h:${i + 1}`), /redis_nodes.*at most 15/],
  ]

  for (const [key, value, message] of catalogue) {
    test(`${key} = ${typeof value === 'number' ? String(value) : JSON.stringify(value)?.slice(0, 40)} throws ERR_INVALID_ARG`, () => {
      const error = construct({ redis_nodes: nodes, [key]: value })
      assert.ok(error instanceof Error)
      assert.equal(error.code, 'ERR_INVALID_ARG')
      assert.match(error.message, message)
    })
  }

  test('both spellings of one option are rejected', () => {
    const error = construct({ redis_nodes: nodes, lock_ttl_ms: 1, lockTtlMs: 2 })
    assert.equal(error.code, 'ERR_INVALID_ARG')
    assert.match(error.message, /given twice, as 'lock_ttl_ms' and 'lockTtlMs'/)
  })

  test('options that are not an object are rejected', () => {
    for (const options of [null, 'localhost', 42, ['localhost']]) {
      assert.equal(construct(options).code, 'ERR_INVALID_ARG')
    }
  })

  test('an acquire option given to the constructor says where it belongs', () => {
    const error = construct({ redis_nodes: nodes, fencing: true })
    assert.equal(error.code, 'ERR_INVALID_ARG')
    assert.match(error.message, /'fencing': it is an option of acquire\(\)/)
  })

  test('a password never appears in an error message', () => {
    for (const node of ['redis://u:hunter2@h:99999', 'redis://u:hunter2@bad host:1', { host: 'bad host', password: 'hunter2' }]) {
      const error = construct({ redis_nodes: [node] })
      assert.equal(error.code, 'ERR_INVALID_ARG')
      assert.doesNotMatch(error.message, /hunter2/)
    }
  })

  describe('environment defaults', () => {
    const saved = { ...process.env }
    after(() => {
      for (const name of ['REDIS_NODES', 'REDIS_INSTANCES', 'REDIS_LOCK_TTL_MS', 'REDIS_RETRY_COUNT', 'REDIS_RETRY_DELAY_MS']) {
        if (saved[name] === undefined) delete process.env[name]
        else process.env[name] = saved[name]
      }
    })

    test('a bad environment value is named', () => {
      process.env.REDIS_LOCK_TTL_MS = '30s'
      assert.match(construct({ redis_nodes: nodes }).message, /REDIS_LOCK_TTL_MS/)
      delete process.env.REDIS_LOCK_TTL_MS
      process.env.REDIS_INSTANCES = '[{"host":'
      assert.match(construct({}).message, /REDIS_INSTANCES.*JSON/)
      process.env.REDIS_INSTANCES = '[{"host":"a","port":6380,"password":"key","ssl":true}]'
      void new DistributedLock({}).close()
      delete process.env.REDIS_INSTANCES
      process.env.REDIS_NODES = 'a:1,,b:2'
      void new DistributedLock({}).close()
      process.env.REDIS_NODES = 'a:1,b:0'
      assert.match(construct({}).message, /REDIS_NODES.*entry 1/)
      delete process.env.REDIS_NODES
    })
  })
})

describe('call arguments', () => {
  const t = useCluster(3, { lock: { retry_count: 0 } })

  const badCalls: [string, () => Promise<unknown>, RegExp][] = [
    ['empty resource', () => t.lock.acquire(''), /empty string/],
    ['number resource', () => t.lock.acquire(42 as never), /resource must be a string, got number 42/],
    ['null resource', () => t.lock.acquire(null as never), /resource must be a string/],
    ['missing resource', () => (t.lock.acquire as (...args: unknown[]) => Promise<unknown>)(), /resource must be a string, got undefined/],
    ['empty list', () => t.lock.acquire([]), /list of resources is empty/],
    ['duplicate list', () => t.lock.acquire(['a', 'a']), /'a' is listed twice/],
    ['list with a number', () => t.lock.acquire(['a', 1 as never]), /resource \[1\]/],
    ['ttl 0', () => t.lock.acquire('x', 0), /ttlMs/],
    ['ttl string', () => t.lock.acquire('x', '100' as never), /ttlMs/],
    ['ttl NaN', () => t.lock.acquire('x', Number.NaN), /ttlMs/],
    ['options as ttl', () => t.lock.acquire('x', { retry_count: 0 } as never), /third argument/],
    ['unknown acquire option', () => t.lock.acquire('x', 100, { retries: 1 } as never), /'retries'/],
    ['bad acquire option', () => t.lock.acquire('x', 100, { retry_count: -5 }), /'retry_count'/],
    ['acquire options not an object', () => t.lock.acquire('x', 100, 'fast' as never), /acquire options must be an object/],
  ]
  for (const [what, call, message] of badCalls) {
    test(`${what} rejects with ERR_INVALID_ARG`, async () => {
      await assert.rejects(call(), (error: LockError) => {
        assert.ok(error instanceof Error)
        assert.equal(error.code, 'ERR_INVALID_ARG')
        assert.match(error.message, message)
        return true
      })
    })
  }

  test('resources of any size and character survive the round trip', async () => {
    for (const resource of ['ünïcødé-锁-🔒', 'tab\tnew\nline\u0000nul', 'x'.repeat(1 << 20)]) {
      const handle = await t.lock.acquire(resource, 10_000)
      assert.ok(handle)
      assert.equal(handle.resource, resource)
      await t.cluster.settled(`redlock:${resource}`, [handle.value, handle.value, handle.value])
      assert.equal(await t.lock.release(handle), true)
    }
  })
})

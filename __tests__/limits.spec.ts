// Inputs are bounded before any work: a list longer than any argument takes,
// an object with more keys than any option has, or a string longer than any
// name is rejected from its size alone, without reading what is in it.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { after, describe, test } from 'node:test'

import { DistributedLock } from '..'
import { thrown } from './helpers/errors'
import { useCluster } from './helpers/fixture'

const MAX_RESOURCES = 64
const MAX_NAME_BYTES = 1 << 20
const MAX_PREFIX_BYTES = 256
const NOWHERE = ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3']
const ROOT = path.resolve(__dirname, '..')

/**
 * Runs `call` (a JavaScript expression over `lock`, a DistributedLock on
 * unreachable nodes) in a child process and returns how its promise or
 * constructor failed. A call that walks a huge input blocks its thread, so
 * it runs where a kill can end it.
 */
function failureOf(call: string): { code: string; message: string } {
  const source = `
    const { DistributedLock } = require(${JSON.stringify(ROOT)})
    const lock = new DistributedLock({ redis_nodes: ${JSON.stringify(NOWHERE)} })
    const report = (error) => process.stdout.write(JSON.stringify({ code: error.code, message: error.message }))
    Promise.resolve().then(() => ${call}).then(() => report({ message: 'no error' }), report).finally(() => lock.close())
  `
  const child = spawnSync(process.execPath, ['-e', source], { encoding: 'utf8', timeout: 30_000 })
  assert.equal(child.signal, null, `${call} still ran after 30 s (killed): ${child.stderr}`)
  assert.equal(child.status, 0, child.stderr)
  return JSON.parse(child.stdout) as { code: string; message: string }
}

/** A list of `length` names whose elements count how often they are read. */
function watchedList(length: number): { list: string[]; reads: () => number } {
  let reads = 0
  const list: string[] = []
  for (let i = 0; i < length; i++) {
    Object.defineProperty(list, i, {
      enumerable: true,
      get() {
        reads++
        return `r${i}`
      },
    })
  }
  return { list, reads: () => reads }
}

/** An object of `size` keys whose values count how often they are read. */
function watchedObject(size: number): { object: Record<string, string>; reads: () => number } {
  let reads = 0
  const object: Record<string, string> = {}
  for (let i = 0; i < size; i++) {
    Object.defineProperty(object, `k${i}`, {
      enumerable: true,
      get() {
        reads++
        return 'v'
      },
    })
  }
  return { object, reads: () => reads }
}

describe('huge inputs are rejected from their size alone', () => {
  // Nothing reaches a node: every call is refused before any work.
  const lock = new DistributedLock({ redis_nodes: NOWHERE })
  after(() => lock.close())

  test('acquire(new Array(2 ** 32 - 1)) rejects at once instead of blocking the thread', () => {
    const failure = failureOf('lock.acquire(new Array(2 ** 32 - 1))')
    assert.equal(failure.code, 'ERR_INVALID_ARG')
    assert.match(failure.message, new RegExp(`resource: at most ${MAX_RESOURCES} resources per lock, got a list of 4294967295`))
  })

  test('inspect(), redis_nodes and metadata with lists of 2 ** 32 - 1 entries', () => {
    for (const [call, message] of [
      ['lock.inspect(new Array(2 ** 32 - 1))', /resource: at most 64 resources/],
      ['new DistributedLock({ redis_nodes: new Array(2 ** 32 - 1) })', /'redis_nodes'.*at most 15 nodes, got 4294967295/],
      ["lock.acquire('x', 1000, { metadata: new Array(2 ** 32 - 1) })", /'metadata'/],
      ["lock.acquire(['x'], new Array(2 ** 32 - 1))", /ttlMs/],
    ] as const) {
      const failure = failureOf(call)
      assert.equal(failure.code, 'ERR_INVALID_ARG', call)
      assert.match(failure.message, message, call)
    }
  })

  test('the length of a list is checked before any of its elements is read', async () => {
    const resources = watchedList(MAX_RESOURCES + 1)
    await assert.rejects(lock.acquire(resources.list, 1_000), { code: 'ERR_INVALID_ARG', message: /at most 64 resources per lock, got a list of 65/ })
    assert.equal(resources.reads(), 0, 'elements read')
    const big = watchedList(100_000)
    await assert.rejects(lock.inspect(big.list as never), { code: 'ERR_INVALID_ARG' })
    assert.equal(big.reads(), 0, 'elements read')
  })

  test('an object with more keys than any option has is not read', async () => {
    const metadata = watchedObject(5_000)
    await assert.rejects(lock.acquire('x', 1_000, { metadata: metadata.object }), { code: 'ERR_INVALID_ARG', message: /'metadata'.*at most 8192 bytes/ })
    assert.equal(metadata.reads(), 0, 'values read')
    const options = watchedObject(5_000)
    assert.equal(thrown(() => new DistributedLock(options.object as never)).code, 'ERR_INVALID_ARG')
    assert.equal(options.reads(), 0, 'values read')
  })

  test('strings of 100 MB: a resource, a key prefix, a password, metadata', async () => {
    const huge = 'x'.repeat(100_000_000)
    await assert.rejects(lock.acquire(huge, 1_000), { code: 'ERR_INVALID_ARG', message: /resource: a resource name is at most 1048576 bytes/ })
    await assert.rejects(lock.acquire(['a', huge], 1_000), { code: 'ERR_INVALID_ARG', message: /resource \[1\]/ })
    await assert.rejects(lock.inspect(huge), { code: 'ERR_INVALID_ARG', message: /at most 1048576 bytes/ })
    await assert.rejects(lock.acquire('x', 1_000, { metadata: { blob: huge } }), { code: 'ERR_INVALID_ARG', message: /'metadata'.*at most 8192 bytes/ })
    assert.match(thrown(() => new DistributedLock({ redis_nodes: NOWHERE, key_prefix: huge })).message, /'key_prefix'.*at most 256 bytes/)
    const password = thrown(() => new DistributedLock({ redis_nodes: [{ host: 'h', password: huge }] }))
    assert.match(password.message, /'password' is too long/)
    assert.ok(password.message.length < 500, 'the message stays short')
    assert.match(thrown(() => new DistributedLock({ redis_nodes: [huge] })).message, /'redis_nodes'.*too long/)
  })
})

describe('the limits, at their edges, against real nodes', () => {
  const t = useCluster(3, { lock: { retry_count: 0 } })

  test(`${MAX_RESOURCES} resources are locked together; one more is rejected`, async () => {
    const names = Array.from({ length: MAX_RESOURCES }, (_, i) => `many-${i}`)
    const handle = await t.lock.acquire(names, 5_000)
    assert.ok(handle)
    await t.cluster.settled('redlock:many-63', [handle.value, handle.value, handle.value])
    assert.equal(await handle.release(), true)
    await assert.rejects(t.lock.acquire([...names, 'one-more'], 5_000), {
      code: 'ERR_INVALID_ARG',
      message: /at most 64 resources per lock, got a list of 65/,
    })
    await assert.rejects(t.lock.acquire([...names.slice(1), names[5]], 5_000), {
      code: 'ERR_INVALID_ARG',
      message: /'many-5' is listed twice \(entries 4 and 63\)/,
    })
  })

  test('a name of 1 MiB is locked; one byte more, or two names over 1 MiB together, are rejected', async () => {
    const longest = 'n'.repeat(MAX_NAME_BYTES - 2) + 'é'
    const handle = await t.lock.acquire(longest, 5_000)
    assert.ok(handle)
    assert.equal(await handle.release(), true)
    await assert.rejects(t.lock.acquire(`${longest}!`, 5_000), { code: 'ERR_INVALID_ARG', message: /at most 1048576 bytes, got 1048577/ })
    const half = 'h'.repeat(MAX_NAME_BYTES / 2)
    await assert.rejects(t.lock.acquire([`${half}1`, `${half}2`], 5_000), { code: 'ERR_INVALID_ARG', message: /together/ })
  })

  test(`a key prefix of ${MAX_PREFIX_BYTES} bytes is used; one byte more is rejected`, async () => {
    const key_prefix = 'p'.repeat(MAX_PREFIX_BYTES - 1) + ':'
    const handle = await t.newLock({ key_prefix }).acquire('x', 5_000)
    assert.ok(handle)
    await t.cluster.settled(`${key_prefix}x`, [handle.value, handle.value, handle.value])
    assert.equal(await handle.release(), true)
    const error = thrown(() => t.newLock({ key_prefix: `${key_prefix}!` }))
    assert.equal(error.code, 'ERR_INVALID_ARG')
    assert.match(error.message, /'key_prefix'.*at most 256 bytes, got 257/)
  })
})

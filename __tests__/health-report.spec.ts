import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { DistributedLock, type LockError } from '..'
import { useCluster } from './helpers/fixture'
import { RedisNode, waitFor } from './helpers/redis'

describe('what health() tells of each node', () => {
  const t = useCluster(3, { flush: 'each' })

  test('its role, memory and persistence, and no lock key count unless asked', async () => {
    const lock = t.newLock()
    const report = await lock.health()
    assert.equal(report.counted, 3)
    for (const node of report.nodes) {
      assert.equal(node.role, 'master')
      assert.ok(node.usedMemoryBytes !== null && node.usedMemoryBytes > 0, `used memory ${node.usedMemoryBytes}`)
      assert.equal(node.aof, true)
      assert.equal(node.appendfsync, 'always')
      assert.equal(node.durable, true)
      assert.equal(node.lockKeys, null)
      assert.equal(node.lockKeysError, null)
    }
    const scans = await t.cluster.calls('scan')
    await lock.health()
    assert.deepEqual(await t.cluster.calls('scan'), scans, 'a plain health() scans nothing')
  })

  test('the lock keys under the key prefix, counted with SCAN, without the fencing counters or other keys', async () => {
    const lock = t.newLock()
    const handles = await Promise.all([
      lock.acquire('count-a', 30_000),
      lock.acquire(['count-b', 'count-c'], 30_000),
      // Leaves a counter, redlock:fence:count-d, which is no lock.
      lock.acquire('count-d', 30_000, { fencing: true }),
    ])
    assert.ok(handles.every(Boolean))
    const fenced = handles[2]!.value
    await t.cluster.settled('redlock:count-d', [fenced, fenced, fenced])
    for (const node of t.cluster.nodes) {
      await node.redis().set('other:key', 'not a lock')
      await node.redis().set('redlockish', 'not under the prefix')
    }
    // Enough keys for SCAN to take several steps of a thousand.
    await Promise.all(t.cluster.nodes.map((node) => {
      const args = Array.from({ length: 2_500 }, (_, i) => [`padding:${i}`, '1']).flat()
      return node.redis().mset(...args)
    }))
    const scans = await t.cluster.calls('scan')
    const report = await lock.health({ lock_keys: true })
    for (const node of report.nodes) {
      assert.equal(node.lockKeys, 4, `${node.node}: ${node.lockKeys} (${node.lockKeysError})`)
      assert.equal(node.lockKeysError, null)
    }
    const steps = (await t.cluster.calls('scan')).map((n, i) => n - scans[i])
    assert.ok(steps.every((n) => n >= 3), `SCAN steps per node: ${steps}`)
    assert.deepEqual((await lock.health({ lockKeys: true })).nodes.map((node) => node.lockKeys), [4, 4, 4], 'the camelCase spelling')
    await Promise.all(handles.map((handle) => handle!.release()))
    await waitFor('the released keys to go', async () =>
      (await lock.health({ lock_keys: true })).nodes.every((node) => node.lockKeys === 0))
  })

  test('a key prefix with glob characters counts only its own keys', async () => {
    const lock = t.newLock({ key_prefix: 'job[1]*:' })
    const handle = await lock.acquire('x', 30_000)
    assert.ok(handle)
    // Both would match the prefix read as a pattern, job[1]*:*.
    for (const node of t.cluster.nodes) {
      await node.redis().set('job1:x', 'v')
      await node.redis().set('job1abc:y', 'v')
    }
    const report = await lock.health({ lock_keys: true })
    assert.deepEqual(report.nodes.map((node) => node.lockKeys), [1, 1, 1])
    await handle.release()
  })

  test('unknown options and values of the wrong type are refused by name', async () => {
    const lock = t.newLock()
    const refused = async (options: unknown, message: RegExp) => {
      const error = await (lock.health as (options: unknown) => Promise<unknown>)(options).then(() => null, (e: LockError) => e)
      assert.equal(error?.code, 'ERR_INVALID_ARG', String(error))
      assert.match(error!.message, message)
    }
    await refused({ lock_key: true }, /'lock_key'.*did you mean 'lock_keys'/)
    await refused({ lock_keys: 'yes' }, /'lock_keys': must be a boolean/)
    await refused({ key_prefix: 'x' }, /'key_prefix': unknown health options key/)
    await refused('lock_keys', /health options must be an object/)
  })
})

describe('health() on nodes that are not plain masters', () => {
  test('a replica says so', async () => {
    const primary = await RedisNode.start()
    const replica = await RedisNode.start({ args: ['--replicaof', '127.0.0.1', String(primary.port)] })
    const lock = new DistributedLock({ redis_nodes: [primary.address, replica.address] })
    try {
      const report = await lock.health()
      assert.deepEqual(report.nodes.map((node) => node.role), ['master', 'slave'])
    } finally {
      await lock.close()
      await replica.stop()
      await primary.stop()
    }
  })

  test('a user without INFO, CONFIG or SCAN still answers, with those fields unknown', async () => {
    const node = await RedisNode.start()
    await node.redis().call('ACL', 'SETUSER', 'narrow', 'on', '>narrow-pw', 'resetkeys', '~redlock:*', '-@all',
      '+ping', '+script|load', '+evalsha', '+set', '+get', '+del', '+pttl')
    const lock = new DistributedLock({ redis_nodes: [`redis://narrow:narrow-pw@${node.address}`] })
    try {
      const [seen] = (await lock.health({ lock_keys: true })).nodes
      assert.equal(seen.answers, true, String(seen.error))
      assert.equal(seen.role, null)
      assert.equal(seen.usedMemoryBytes, null)
      assert.equal(seen.aof, null)
      assert.equal(seen.appendfsync, null)
      assert.equal(seen.durable, null)
      assert.equal(seen.lockKeys, null)
      assert.match(seen.lockKeysError ?? '', /NOPERM|permission/i)
      assert.doesNotMatch(JSON.stringify(seen), /narrow-pw/)
    } finally {
      await lock.close()
      await node.stop()
    }
  })
})

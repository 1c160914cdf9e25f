import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import Redis from 'ioredis'
import Redlock from 'redlock'

import { DistributedLock } from '..'
import { Cluster } from './helpers/redis'

/**
 * During a migration both libraries run side by side on the same nodes:
 * with `key_prefix: ''` they use the same keys, so each excludes the other,
 * and neither deletes a lock it does not own.
 */
describe('interop with npm redlock@5 (key_prefix: \'\')', () => {
  let cluster: Cluster
  let ours: DistributedLock
  let clients: Redis[]
  let theirs: Redlock

  before(async () => {
    cluster = await Cluster.start(3)
    ours = new DistributedLock({ redis_nodes: cluster.addresses, key_prefix: '', retry_count: 0 })
    clients = cluster.nodes.map((node) => new Redis({ host: '127.0.0.1', port: node.port }))
    theirs = new Redlock(clients, { retryCount: 0 })
  })
  after(async () => {
    await ours.close()
    await theirs.quit()
    await cluster.stop()
  })

  test('our lock keeps redlock out, and redlock\'s failed attempt leaves our keys alone', async () => {
    const handle = await ours.acquire('shared-a', 10_000)
    assert.ok(handle)
    await cluster.settled('shared-a', [handle.value, handle.value, handle.value])
    await assert.rejects(theirs.acquire(['shared-a'], 10_000), 'redlock cannot take a resource we hold')
    assert.deepEqual(await cluster.values('shared-a'), [handle.value, handle.value, handle.value])
    assert.equal(await ours.release(handle), true)
    await cluster.settled('shared-a', [null, null, null])
    const after = await theirs.acquire(['shared-a'], 10_000)
    await after.release()
  })

  test('redlock\'s lock keeps us out, and neither our failed attempt nor our release of another lock deletes it', async () => {
    const lock = await theirs.acquire(['shared-b'], 10_000)
    assert.equal(await ours.acquire('shared-b', 10_000), null)
    const other = await ours.acquire('shared-c', 10_000)
    assert.ok(other)
    assert.equal(await ours.release(other), true)
    assert.deepEqual(await cluster.values('shared-b'), [lock.value, lock.value, lock.value])
    const extended = await lock.extend(10_000)
    assert.equal(extended.value, lock.value, 'redlock still owns it')
    await extended.release()
    await cluster.settled('shared-b', [null, null, null])
    const handle = await ours.acquire('shared-b', 10_000)
    assert.ok(handle, 'free for us once redlock released it')
    await ours.release(handle)
  })

  test('several resources: all-or-nothing on both sides', async () => {
    const lock = await theirs.acquire(['multi-1', 'multi-2'], 10_000)
    assert.equal(await ours.acquire(['multi-0', 'multi-2'], 10_000), null)
    assert.deepEqual(await cluster.values('multi-0'), [null, null, null], 'nothing of ours left in part')
    await lock.release()
    const handle = await ours.acquire(['multi-1', 'multi-2'], 10_000)
    assert.ok(handle)
    await assert.rejects(theirs.acquire(['multi-2', 'multi-3'], 10_000))
    assert.deepEqual(await cluster.values('multi-3'), [null, null, null])
    await ours.release(handle)
  })
})

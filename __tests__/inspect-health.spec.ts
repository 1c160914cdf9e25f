import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'

import { DistributedLock, type LockError } from '..'
import { useCluster } from './helpers/fixture'
import { RedisNode } from './helpers/redis'

const COMMAND_TIMEOUT_MS = 200
const METADATA = { instance: 'us-east-1', region: 'us-east' }

describe('metadata, inspect() and health()', () => {
  const t = useCluster(3)
  let owner: DistributedLock
  let observer: DistributedLock

  before(async () => {
    const options = { retry_count: 0, command_timeout_ms: COMMAND_TIMEOUT_MS }
    owner = t.newLock(options)
    observer = t.newLock(options)
    // Connected before any node is paused, so a pause tests the answer, not the connect.
    await owner.health()
    await observer.health()
  })

  test('metadata is stored in the lock key with its TTL, kept by extend, and gone with release', async () => {
    const handle = await owner.acquire('with-metadata', 5_000, { metadata: METADATA })
    assert.ok(handle)
    const stored = `${handle.value} ${JSON.stringify(METADATA)}`
    await t.cluster.settled('redlock:with-metadata', [stored, stored, stored])
    assert.ok((await t.cluster.pttls('redlock:with-metadata')).every((ttl) => ttl > 4_000 && ttl <= 5_000))

    const seen = await observer.inspect('with-metadata')
    assert.equal(seen.locked, true)
    assert.equal(seen.holder, handle.value)
    assert.equal(seen.mine, false, 'another instance holds it')
    assert.deepEqual(seen.metadata, METADATA)
    assert.ok(seen.ttlMs !== null && seen.ttlMs > 4_000 && seen.ttlMs <= 5_000, `${seen.ttlMs}`)
    assert.equal(seen.quorum, 2)
    for (const node of seen.nodes) {
      assert.equal(node.held, true)
      assert.equal(node.error, null)
      assert.deepEqual(node.metadata, METADATA)
      assert.equal(node.quarantineMs, 0)
    }
    assert.equal((await owner.inspect('with-metadata')).mine, true)

    assert.equal(await owner.extend(handle, 20_000), true)
    const extended = await observer.inspect('with-metadata')
    assert.deepEqual(extended.metadata, METADATA)
    assert.ok(extended.ttlMs !== null && extended.ttlMs > 15_000, `${extended.ttlMs}`)

    assert.equal(await owner.release(handle), true)
    const released = await observer.inspect('with-metadata')
    assert.equal(released.locked, false)
    assert.equal(released.holder, null)
    assert.ok(released.nodes.every((node) => !node.held && node.ttlMs === null))
  })

  test('a plain lock, and another library\'s key without a TTL, inspect as they are', async () => {
    const handle = await owner.acquire('plain', 5_000)
    assert.ok(handle)
    const seen = await observer.inspect('plain')
    assert.equal(seen.holder, handle.value)
    assert.equal(seen.metadata, null)
    await owner.release(handle)

    for (const node of t.cluster.nodes) await node.redis().set('redlock:foreign', 'abc {not json')
    const foreign = await observer.inspect('foreign')
    assert.equal(foreign.locked, true)
    assert.equal(foreign.holder, 'abc')
    assert.equal(foreign.metadata, null, 'a value that only looks like ours has no metadata')
    assert.ok(foreign.nodes.every((node) => node.ttlMs === -1))
    for (const node of t.cluster.nodes) await node.redis().del('redlock:foreign')
  })

  test('inspect with a node paused and a node down', async () => {
    const handle = await owner.acquire('faults', 10_000, { metadata: METADATA })
    assert.ok(handle)
    await t.cluster.settled('redlock:faults', Array(3).fill(`${handle.value} ${JSON.stringify(METADATA)}`))
    t.cluster.nodes[1].pause()
    try {
      const seen = await observer.inspect('faults')
      assert.equal(seen.locked, true, 'two of three still agree')
      assert.deepEqual(seen.metadata, METADATA)
      assert.match(seen.nodes[1].error ?? '', new RegExp(`no reply within ${COMMAND_TIMEOUT_MS} ms`))
      assert.equal(seen.nodes[1].held, false)
      t.cluster.nodes[2].pause()
      const minority = await observer.inspect('faults')
      assert.equal(minority.locked, false, 'one node alone is no majority')
      assert.equal(minority.nodes[0].held, true)
    } finally {
      t.cluster.nodes[1].resume()
      t.cluster.nodes[2].resume()
    }
    await owner.release(handle)
  })

  test('health with every node up, one paused, then two down', async () => {
    const up = await observer.health()
    assert.equal(up.quorumReachable, true)
    assert.equal(up.quorum, 2)
    assert.equal(up.counted, 3)
    up.nodes.forEach((node, i) => {
      assert.equal(node.node, t.cluster.nodes[i].address)
      assert.equal(node.answers, true)
      assert.ok(node.latencyMs !== null && node.latencyMs >= 0 && node.latencyMs < COMMAND_TIMEOUT_MS)
      assert.match(node.runId ?? '', /^[0-9a-f]{40}$/)
      assert.match(node.version ?? '', /^\d+\.\d+\.\d+/)
      assert.ok(node.uptimeMs !== null && node.uptimeMs >= 0)
      assert.equal(node.durable, true)
      assert.equal(node.quarantineMs, 0)
      assert.equal(node.error, null)
    })

    t.cluster.nodes[0].pause()
    try {
      const paused = await observer.health()
      assert.equal(paused.nodes[0].answers, false)
      assert.equal(paused.nodes[0].latencyMs, null)
      assert.match(paused.nodes[0].error ?? '', /no reply within/)
      assert.equal(paused.counted, 2)
      assert.equal(paused.quorumReachable, true)
    } finally {
      t.cluster.nodes[0].resume()
    }

    await t.cluster.nodes[1].kill()
    await t.cluster.nodes[2].kill()
    try {
      const down = await observer.health()
      assert.equal(down.quorumReachable, false)
      assert.equal(down.counted, 1)
      for (const node of down.nodes.slice(1)) {
        assert.equal(node.answers, false)
        assert.match(node.error ?? '', /refused|closed|reset|broken/i)
        assert.ok(node.lastError, 'the last error is kept')
      }
    } finally {
      await t.cluster.nodes[1].start()
      await t.cluster.nodes[2].start()
    }
    const again = await observer.health()
    assert.equal(again.counted, 3)
    assert.notEqual(again.nodes[1].runId, up.nodes[1].runId, 'a restart shows as a new run id')
  })

  test('health never shows a password, and a wrong one is named', async () => {
    const guarded = await RedisNode.start({ args: ['--requirepass', 'inspect-s3cret'] })
    const wrong = new DistributedLock({ redis_nodes: [`redis://:not-the-s3cret@${guarded.address}`] })
    const right = new DistributedLock({ redis_nodes: [`redis://:inspect-s3cret@${guarded.address}`] })
    try {
      const bad = await wrong.health()
      assert.equal(bad.quorumReachable, false)
      assert.match(bad.nodes[0].error ?? '', /WRONGPASS|invalid username-password|auth/i)
      const good = await right.health()
      assert.equal(good.quorumReachable, true)
      const text = JSON.stringify([bad, good])
      assert.doesNotMatch(text, /s3cret/)
      assert.ok(text.includes(guarded.address))
    } finally {
      await wrong.close()
      await right.close()
      await guarded.stop()
    }
  })

  test('bad arguments and calls after close', async () => {
    for (const resource of ['', ['a', 'b'], 42, null]) {
      await assert.rejects(observer.inspect(resource as string), (error: LockError) => error.code === 'ERR_INVALID_ARG')
    }
    const closed = t.newLock()
    await closed.close()
    await assert.rejects(closed.inspect('x'), (error: LockError) => error.code === 'ERR_LOCK_CLOSED')
    await assert.rejects(closed.health(), (error: LockError) => error.code === 'ERR_LOCK_CLOSED')
  })
})

import assert from 'node:assert/strict'
import { before, describe, test } from 'node:test'

import { DistributedLock, type LockError } from '..'
import { useCluster } from './helpers/fixture'
import { Cluster, subsets, waitFor } from './helpers/redis'

const COMMAND_TIMEOUT_MS = 150

for (const size of [3, 5]) {
  describe(`quorum over ${size} nodes`, () => {
    const t = useCluster(size, { lock: { retry_count: 0, command_timeout_ms: COMMAND_TIMEOUT_MS } })

    before(async () => {
      // Connect every node before pausing any, so a pause tests the vote, not the connect.
      const warm = await t.lock.acquire('warm-up', 1_000)
      assert.ok(warm)
      await t.lock.release(warm)
    })

    test('every subset of paused nodes: acquired exactly when a majority is free', async () => {
      const majority = Math.floor(size / 2) + 1
      for (const paused of subsets(size)) {
        const resource = `subset-${paused.join('-') || 'none'}`
        for (const i of paused) t.cluster.nodes[i].pause()
        let outcome: string
        try {
          const handle = await t.lock.acquire(resource, 10_000)
          outcome = handle ? 'acquired' : 'null'
          if (handle) {
            const free = t.cluster.nodes.filter((_, i) => !paused.includes(i))
            await waitFor(`${resource}: every free node to hold the value`, async () => {
              const values = await Promise.all(free.map((node) => node.redis().get(`redlock:${resource}`)))
              return values.every((v) => v === handle.value)
            })
            assert.equal(await t.lock.release(handle), true, `${resource}: released`)
          }
        } catch (error) {
          const e = error as LockError
          outcome = e.code
          assert.equal(e.code, 'ERR_QUORUM_UNAVAILABLE')
          assert.equal(e.nodeErrors?.length, paused.length, `${resource}: one entry per paused node`)
          assert.deepEqual(
            e.nodeErrors?.map((n) => n.node).sort(),
            paused.map((i) => t.cluster.nodes[i].address).sort(),
          )
        } finally {
          for (const i of paused) t.cluster.nodes[i].resume()
        }
        const expected = size - paused.length >= majority ? 'acquired' : 'ERR_QUORUM_UNAVAILABLE'
        assert.equal(outcome, expected, `paused ${JSON.stringify(paused)}`)
      }
    })
  })
}

describe('a majority of nodes down', () => {
  const t = useCluster(3)

  test('rejects with ERR_QUORUM_UNAVAILABLE within the command timeout, naming each failed node', async () => {
    const lock = t.newLock({ retry_count: 0, command_timeout_ms: 200 })
    const warm = await lock.acquire('warm-up', 1_000)
    assert.ok(warm)
    await t.cluster.nodes[1].kill()
    t.cluster.nodes[2].pause()
    try {
      const started = Date.now()
      const error = (await lock.acquire('down', 60_000).then(
        () => assert.fail('acquired without a quorum'),
        (e: unknown) => e,
      )) as LockError
      const elapsed = Date.now() - started
      assert.ok(error instanceof Error)
      assert.equal(error.code, 'ERR_QUORUM_UNAVAILABLE')
      assert.ok(elapsed < 2_000, `took ${elapsed} ms; the TTL was 60000`)
      const byNode = new Map(error.nodeErrors?.map((n) => [n.node, n.message]))
      assert.equal(byNode.size, 2)
      assert.match(byNode.get(t.cluster.nodes[1].address) ?? '', /refused|closed|reset|broken|dropped/i)
      assert.match(byNode.get(t.cluster.nodes[2].address) ?? '', /no reply within 200 ms/)
      assert.match(error.message, /quorum unavailable: 2 of 3 nodes failed/)
      // The node that answered holds no leftover of the failed attempt.
      assert.equal(await t.cluster.nodes[0].redis().get('redlock:down'), null)
    } finally {
      t.cluster.nodes[2].resume()
    }
  })

  test('a node down from the start costs a vote, not the lock', async () => {
    const fresh = await Cluster.start(3)
    await fresh.nodes[0].kill()
    const lock = new DistributedLock({ redis_nodes: fresh.addresses, retry_count: 0 })
    const handle = await lock.acquire('one-down', 10_000)
    assert.ok(handle)
    assert.equal(await lock.release(handle), true)
    await lock.close()
    await fresh.stop()
  })

  test('a node that restarts is used again after reconnecting', async () => {
    const lock = t.newLock({ redis_nodes: t.cluster.addresses.slice(0, 1), retry_count: 0 })
    assert.ok(await lock.acquire('before-restart', 10_000))
    await t.cluster.nodes[0].kill()
    await assert.rejects(lock.acquire('during-restart', 10_000), { code: 'ERR_QUORUM_UNAVAILABLE' })
    await t.cluster.nodes[0].start()
    let handle = null
    for (let i = 0; i < 100 && handle === null; i++) {
      handle = await lock.acquire('after-restart', 10_000).catch(() => null)
      if (handle === null) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.ok(handle, 'acquired once the node was back')
  })
})

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { DistributedLock, type LockHandle } from '..'
import { RedisNode, waitFor } from './helpers/redis'

const TTL_MS = 3_000

/**
 * Redlock's known hole: the owner holds a lock on A and C (B refused it),
 * C crashes and comes back at once without its data, and a contender then
 * gets B and C. The restart quarantine closes it; turned off, the same
 * scenario lets the second owner in, which shows the check can fail.
 */
describe('restart quarantine', () => {
  let durable: RedisNode[]
  let volatile: RedisNode

  before(async () => {
    durable = [await RedisNode.start(), await RedisNode.start()]
    volatile = await RedisNode.start({ durable: false })
  })
  after(async () => {
    for (const node of [...durable, volatile]) await node.stop()
  })

  const addresses = () => [durable[0].address, durable[1].address, volatile.address]

  /** The owner's lock on A and C only, then C crashes and restarts empty; returns when that is done. */
  async function ownerOnAAndC(resource: string): Promise<{ owner: DistributedLock; handle: LockHandle }> {
    const key = `redlock:${resource}`
    await durable[1].redis().set(key, 'someone-else', 'PX', 60_000)
    // The owner only needs its key on A and C: it turns quarantine off so
    // that C, started moments ago without persistence, counts for it.
    const owner = new DistributedLock({ redis_nodes: addresses(), retry_count: 0, restart_quarantine: false })
    const handle = await owner.acquire(resource, TTL_MS)
    assert.ok(handle, 'the owner holds the lock on A and C')
    assert.deepEqual(
      await Promise.all([durable[0], durable[1], volatile].map((node) => node.redis().get(key))),
      [handle.value, 'someone-else', handle.value],
    )
    await durable[1].redis().del(key)
    await volatile.kill()
    await volatile.start()
    assert.equal(await volatile.redis().get(key), null, 'C forgot the lock')
    return { owner, handle }
  }

  /** Tries every 50 ms until acquired; the epoch ms at which it was. */
  async function firstAcquisition(contender: DistributedLock, resource: string): Promise<{ at: number; nulls: number }> {
    let nulls = 0
    for (;;) {
      const handle = await contender.acquire(resource, TTL_MS)
      if (handle) {
        const at = Date.now()
        await contender.release(handle)
        return { at, nulls }
      }
      nulls++
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  test('on (the default): no second owner until the first lease is over, and the restarted node shows in health()', async () => {
    const { owner, handle } = await ownerOnAAndC('quarantined')
    const contender = new DistributedLock({ redis_nodes: addresses(), retry_count: 0, lock_ttl_ms: TTL_MS })
    try {
      const health = await contender.health()
      const restarted = health.nodes[2]
      assert.equal(restarted.durable, false)
      assert.ok(restarted.quarantineMs > TTL_MS - 1_500 && restarted.quarantineMs <= TTL_MS, `${restarted.quarantineMs}`)
      assert.ok(restarted.uptimeMs !== null && restarted.uptimeMs < 1_500)
      assert.equal(health.counted, 2)
      assert.equal(health.quorumReachable, true)
      const { at, nulls } = await firstAcquisition(contender, 'quarantined')
      assert.ok(nulls > 0, 'the first attempts found the lock held')
      assert.ok(at >= handle.expiresAt, `second owner at ${at}, first lease valid until ${handle.expiresAt}`)
      await waitFor('the quarantine to end', async () => (await contender.health()).nodes[2].quarantineMs === 0, TTL_MS + 1_000)
    } finally {
      await contender.close()
      await owner.close()
    }
  })

  test('off: the same crash lets a second owner in while the first lease is still valid', async () => {
    const { owner, handle } = await ownerOnAAndC('unprotected')
    const contender = new DistributedLock({ redis_nodes: addresses(), retry_count: 0, restart_quarantine: false })
    try {
      const { at } = await firstAcquisition(contender, 'unprotected')
      assert.ok(at < handle.expiresAt, 'two owners at once: the hole quarantine closes')
    } finally {
      await contender.close()
      await owner.close()
    }
  })

  test('a node without durable persistence that started long enough ago counts, and durable nodes never wait', async () => {
    const lock = new DistributedLock({ redis_nodes: addresses(), retry_count: 0, lock_ttl_ms: 500, max_ttl_ms: 500 })
    try {
      await waitFor('the volatile node to be up longer than max_ttl_ms', async () => (await lock.health()).nodes[2].quarantineMs === 0)
      const health = await lock.health()
      assert.deepEqual(health.nodes.map((node) => node.durable), [true, true, false])
      assert.equal(health.counted, 3)
      await durable[0].kill()
      await durable[0].start()
      await durable[1].kill()
      await waitFor('the restarted node to answer the lock', async () => (await lock.health()).nodes[0].answers)
      const restarted = (await lock.health()).nodes[0]
      assert.ok(restarted.uptimeMs !== null && restarted.uptimeMs < 1_500)
      assert.equal(restarted.quarantineMs, 0)
      const handle = await lock.acquire('durable-restart', 500)
      assert.ok(handle, 'a durable node restarted at once still counts')
      await lock.release(handle)
    } finally {
      await durable[1].start()
      await lock.close()
    }
  })
})

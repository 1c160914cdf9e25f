import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { useCluster } from './helpers/fixture'
import { waitFor } from './helpers/redis'

/**
 * A failed attempt deletes what it wrote, and only a release tells the
 * waiters: an announcement of the clean-up would wake them (the caller
 * itself among them) to find the lock held as before.
 */
describe('the clean-up of a failed attempt', () => {
  const t = useCluster(3, { flush: 'each' })

  test('deletes the partial grant and announces nothing; a release announces', async () => {
    const key = 'redlock:split'
    // Another owner holds the lock on two nodes; the third grants alone.
    await Promise.all(t.cluster.nodes.slice(0, 2).map((node) => node.redis().set(key, 'other-owner', 'PX', 30_000)))
    const lock = t.newLock({ retry_count: 0 })
    const before = await t.cluster.calls('publish')
    assert.equal(await lock.acquire('split', 10_000), null)
    await t.cluster.settled(key, ['other-owner', 'other-owner', null])
    assert.deepEqual(await t.cluster.calls('publish'), before, 'no node announced the clean-up')

    const handle = await lock.acquire('free', 10_000)
    assert.ok(handle)
    assert.equal(await lock.release(handle), true)
    // The release resolves at quorum: the last node may announce a moment later.
    await waitFor('each node to announce the release', async () => {
      const after = await t.cluster.calls('publish')
      return after.every((count, i) => count === before[i] + 1)
    })
  })
})

import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'

import { type DistributedLock } from '..'
import { useCluster } from './helpers/fixture'
import { waitFor } from './helpers/redis'

// A new instance connects with its first call. A node paused at that moment
// accepts the connection (the kernel does) but answers nothing, so every
// command to it waits in the queue of a connection that is still opening,
// and the call is decided by the other two. Once the node is resumed, the
// commands must reach it in the order they were issued.
describe('commands to a node that is still connecting arrive in the order they were issued', () => {
  const t = useCluster(3, { flush: 'each' })

  /** A fresh instance whose first connection to the last node waits until it is resumed 100 ms later. */
  async function withConnectingNode(run: (lock: DistributedLock) => Promise<void>): Promise<void> {
    // The node resumes well within the command timeout, so its replies count.
    const lock = t.newLock({ retry_count: 0, command_timeout_ms: 2_000 })
    const connecting = t.cluster.nodes[2]
    connecting.pause()
    const resume = setTimeout(() => connecting.resume(), 100)
    try {
      await run(lock)
    } finally {
      clearTimeout(resume)
      connecting.resume()
      await lock.close()
    }
  }

  test('phase 2 of a fenced acquire raises the counter there too: it follows the write that locked the node', async () => {
    // Without ordering the two phases race to the node once it answers, and
    // phase 2 overtakes in about one round of three: ten rounds all but
    // certainly show it.
    for (let round = 0; round < 10; round++) {
      await withConnectingNode(async (lock) => {
        const resource = `fenced-${round}`
        const handle = await lock.acquire(resource, 10_000, { fencing: true })
        assert.ok(handle?.fencingToken)
        const token = String(handle.fencingToken)
        await waitFor(`every node's counter of ${resource} to hold the handle's token`, async () =>
          (await Promise.all(t.cluster.nodes.map((node) => node.redis().get(`redlock:fence:${resource}`)))).every((counter) => counter === token))
        await t.cluster.settled(`redlock:${resource}`, [handle.value, handle.value, handle.value])
      })
    }
  })

  test('a release right after the acquire deletes the key there too: it follows the write', async () => {
    await withConnectingNode(async (lock) => {
      const handle = await lock.acquire('released', 10_000)
      assert.ok(handle)
      assert.equal(await lock.release(handle), true)
      await t.cluster.settled('redlock:released', [null, null, null])
    })
  })

  test('a failed attempt leaves nothing there: its clean-up follows its write', async () => {
    const other = t.newLock({ retry_count: 0 })
    const held = await other.acquire(['owned', 'contended'], 10_000)
    assert.ok(held)
    // The first two nodes refuse; the connecting one grants once resumed, and
    // the clean-up issued after the refusal must follow that grant. (The
    // acquire above resolved at quorum: its write reaches the last node too
    // before that node's copy is deleted by hand.)
    await t.cluster.settled('redlock:contended', [held.value, held.value, held.value])
    await t.cluster.nodes[2].redis().del('redlock:owned', 'redlock:contended')
    const [, , setsBefore] = await t.cluster.calls('set')
    await withConnectingNode(async (lock) => {
      assert.equal(await lock.acquire('contended', 10_000), null)
      await waitFor('the connecting node to have taken the write', async () => (await t.cluster.calls('set'))[2] > setsBefore)
      await t.cluster.settled('redlock:contended', [held.value, held.value, null])
    })
  })
})

describe('a node that lost the scripts (NOSCRIPT)', () => {
  const t = useCluster(3, { lock: { retry_count: 0 }, flush: 'each' })
  const sha1 = (file: string) => createHash('sha1').update(readFileSync(path.join(__dirname, '../src/engine/scripts', file))).digest('hex')

  // Loading the script and sending the command again would put it behind
  // commands issued after it; the connection is opened again instead.
  test('costs that vote, and the connection opened again loads the scripts and votes again', async () => {
    const warm = await t.lock.acquire(['warm-1', 'warm-2'], 10_000)
    assert.ok(warm, 'the connections are open and the scripts loaded')
    assert.equal(await t.lock.release(warm), true)
    const node = t.cluster.nodes[0]
    await node.redis().script('FLUSH')
    const lost = await t.lock.acquire(['a', 'b'], 10_000)
    assert.ok(lost, 'the other two nodes grant')
    await t.cluster.settled('redlock:a', [null, lost.value, lost.value])
    await waitFor('the lock to have seen the NOSCRIPT', async () => /NOSCRIPT/.test((await t.lock.health()).nodes[0].lastError ?? ''))
    const again = await t.lock.acquire(['c', 'd'], 10_000)
    assert.ok(again)
    await t.cluster.settled('redlock:c', [again.value, again.value, again.value])
    assert.deepEqual(await node.redis().script('EXISTS', sha1('acquire_all.lua'), sha1('release.lua')), [1, 1])
    assert.equal(await t.lock.release(lost), true)
    assert.equal(await t.lock.release(again), true)
  })
})

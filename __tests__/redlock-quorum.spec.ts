import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import { ExecutionError, ResourceLockedError } from '../redlock.js'
import { useCluster } from './helpers/fixture'
import { freePort, waitFor } from './helpers/redis'
import { againstOf, forOf, useRedlocks } from './redlock/clients'

const LOCKED_ONE = 'The operation was applied to: 0 of the 1 requested resources.'

/** The rejection of `promise`, which must be an ExecutionError. */
async function executionError(promise: Promise<unknown>): Promise<ExecutionError> {
  const error = await promise.then(() => assert.fail('acquired'), (e: unknown) => e)
  assert.ok(error instanceof ExecutionError, `rejected with ${String(error)}`)
  assert.equal(error.message, 'The operation was unable to achieve a quorum during its retry window.')
  return error
}

describe('redlock: exclusivity and the quorum', () => {
  const t = useCluster(3, { flush: 'each' })
  const r = useRedlocks()

  test('individual locks are exclusive: every attempt of the second fails with ResourceLockedError votes', async () => {
    const { redlock, clients } = r.make(t.cluster, { retryDelay: 20, retryJitter: 10 })
    const lock = await redlock.acquire(['c'], 10_000)
    const error = await executionError(redlock.acquire(['c'], 10_000))
    assert.equal(error.attempts.length, 11, 'retryCount 10: 11 attempts')
    for (const stats of await Promise.all(error.attempts)) {
      assert.equal(stats.membershipSize, 3)
      assert.equal(stats.quorumSize, 2)
      assert.equal(stats.votesFor.size, 0)
      assert.deepEqual(againstOf(stats, clients).map(({ node }) => node).sort(), [0, 1, 2])
      for (const vote of stats.votesAgainst.values()) {
        assert.ok(vote instanceof ResourceLockedError)
        assert.equal(vote.message, LOCKED_ONE)
      }
    }
    assert.deepEqual(await t.cluster.values('c'), [lock.value, lock.value, lock.value], 'the holder is untouched')
  })

  test('overlapping multi-locks are exclusive, and the failed one leaves no key on the resource it did not share', async () => {
    const { redlock } = r.make(t.cluster, { retryCount: 2, retryDelay: 20 })
    const lock = await redlock.acquire(['c1', 'c2'], 10_000)
    const error = await executionError(redlock.acquire(['c2', 'c3'], 10_000))
    assert.equal(error.attempts.length, 3)
    for (const stats of await Promise.all(error.attempts)) {
      for (const vote of stats.votesAgainst.values()) {
        assert.ok(vote instanceof ResourceLockedError)
        assert.equal(vote.message, 'The operation was applied to: 0 of the 2 requested resources.')
      }
    }
    assert.deepEqual(await t.cluster.values('c1'), [lock.value, lock.value, lock.value])
    assert.deepEqual(await t.cluster.values('c2'), [lock.value, lock.value, lock.value])
    await t.cluster.settled('c3', [null, null, null])
  })

  test('a minority refusing: acquired on the others, the refusing node\'s key (without TTL) left alone through extend and release', async () => {
    const { redlock, clients } = r.make(t.cluster)
    await t.cluster.nodes[2].redis().set('b', 'other')
    let lock = await redlock.acquire(['b'], 10_000)
    await t.cluster.settled('b', [lock.value, lock.value, 'other'])
    const pttls = await t.cluster.pttls('b')
    assert.ok(pttls[0] > 9_800 && pttls[1] > 9_800, `PTTLs ${pttls}`)
    assert.equal(pttls[2], -1, 'the other key keeps no TTL')
    const stats = await lock.attempts[0]
    assert.deepEqual(forOf(stats, clients), [0, 1])
    const [against] = againstOf(stats, clients)
    assert.equal(against.node, 2)
    assert.ok(against.error instanceof ResourceLockedError)
    assert.equal(against.error.message, LOCKED_ONE)

    lock = await lock.extend(30_000)
    await waitFor('the extension on the majority', async () => (await t.cluster.pttls('b')).slice(0, 2).every((pttl) => pttl > 29_000))
    assert.equal((await t.cluster.pttls('b'))[2], -1)
    assert.deepEqual(forOf(await lock.attempts[0], clients), [0, 1])
    await lock.release()
    await t.cluster.settled('b', [null, null, 'other'])
  })

  test('a majority refusing: ExecutionError with retryCount + 1 attempts, each with the ResourceLockedError of both', async () => {
    const { redlock, clients } = r.make(t.cluster, { retryCount: 4, retryDelay: 20, retryJitter: 10 })
    await t.cluster.nodes[1].redis().set('m', 'other1')
    await t.cluster.nodes[2].redis().set('m', 'other2')
    const error = await executionError(redlock.acquire(['m'], 10_000))
    assert.equal(error.attempts.length, 5)
    for (const stats of await Promise.all(error.attempts)) {
      const against = againstOf(stats, clients)
      for (const { error: vote } of against) {
        assert.ok(vote instanceof ResourceLockedError)
        assert.equal(vote.message, LOCKED_ONE)
      }
      // Node 0 granted and was cleaned up, so it votes for; unless its grant
      // came after the attempt was decided and the read found the attempt's
      // own key still there (redlock.js: what a read cannot tell apart).
      const nodes = [...forOf(stats, clients), ...against.map(({ node }) => node)].sort()
      assert.deepEqual(nodes, [0, 1, 2])
      assert.deepEqual(forOf(stats, clients).filter((node) => node !== 0), [], 'nodes 1 and 2 always refuse')
    }
    await t.cluster.settled('m', [null, 'other1', 'other2'])
  })

  test('every vote against is emitted on \'error\', ResourceLockedError too', async () => {
    const { redlock } = r.make(t.cluster, { retryCount: 0 })
    const seen: Error[] = []
    redlock.on('error', (error: Error) => seen.push(error))
    await t.cluster.nodes[0].redis().set('e', 'other')
    const lock = await redlock.acquire(['e'], 10_000)
    await lock.attempts[0]
    assert.equal(seen.length, 1)
    assert.ok(seen[0] instanceof ResourceLockedError)
  })

  test('unreachable nodes: every attempt fails with each node\'s error as its vote', async () => {
    const ports = [await freePort(), await freePort(), await freePort()]
    const { redlock, clients } = r.make(ports, { retryDelay: 20, retryJitter: 10 }, { lazyConnect: true, retryStrategy: () => null })
    const error = await executionError(redlock.acquire(['u'], 10_000))
    assert.equal(error.attempts.length, 11)
    for (const stats of await Promise.all(error.attempts)) {
      assert.equal(stats.votesFor.size, 0)
      assert.deepEqual(againstOf(stats, clients).map(({ node }) => node).sort(), [0, 1, 2])
      for (const vote of stats.votesAgainst.values()) {
        assert.ok(!(vote instanceof ResourceLockedError))
        assert.match(vote.message, /connection refused/)
      }
    }
  })

  test('a minority unreachable: acquired, with the paused node\'s failure as its vote against', async () => {
    const { redlock, clients } = r.make(t.cluster)
    const paused = t.cluster.nodes[1]
    await redlock.release(await redlock.acquire(['warm'], 10_000))
    paused.pause()
    try {
      const lock = await redlock.acquire(['p'], 10_000)
      const stats = await lock.attempts[0]
      assert.deepEqual(forOf(stats, clients), [0, 2])
      const [against] = againstOf(stats, clients)
      assert.equal(against.node, 1)
      assert.match(against.error.message, /no reply within/)
    } finally {
      paused.resume()
    }
  })

  test('retryCount 0 tells whether a resource is unavailable; -1 retries until the holder releases', async () => {
    const { redlock } = r.make(t.cluster, { retryCount: 0 })
    const lock = await redlock.acquire(['q'], 10_000)
    const error = await executionError(redlock.acquire(['q'], 10_000))
    assert.equal(error.attempts.length, 1)
    const waiting = redlock.acquire(['q'], 10_000, { retryCount: -1, retryDelay: 20, retryJitter: 0 })
    await new Promise((resolve) => setTimeout(resolve, 300))
    await lock.release()
    const next = await waiting
    await t.cluster.settled('q', [next.value, next.value, next.value])
    assert.equal(next.attempts.length, 1, 'unlimited retries keep only the attempt that won')
  })

  test('retries wait retryDelay plus or minus up to retryJitter, as redlock draws it', async (context) => {
    const { redlock } = r.make(t.cluster)
    await redlock.acquire(['s'], 10_000)
    const settings = { retryCount: 4, retryDelay: 100, retryJitter: 100 }
    const timed = async (draw: number): Promise<number> => {
      context.mock.method(Math, 'random', () => draw)
      const started = Date.now()
      try {
        await executionError(redlock.acquire(['s'], 10_000, settings))
      } finally {
        context.mock.restoreAll()
      }
      return Date.now() - started
    }
    // Drawing 0 takes the whole jitter off each of the 4 pauses; this
    // library's own retry_jitter_ms would only ever add to the delay.
    const shortest = await timed(0)
    assert.ok(shortest < 300, `4 pauses of 0 ms took ${shortest} ms`)
    const longest = await timed(0.9999)
    assert.ok(longest >= 4 * 199, `4 pauses of 199 ms took ${longest} ms`)
  })
})

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { DistributedLock, type LockError, type LockHandle } from '..'
import { useCluster } from './helpers/fixture'
import { RedisNode } from './helpers/redis'

/** What one node answered in the attempt that decided a call (binding.d.ts `NodeVote`). */
interface NodeVote {
  node: string
  vote: 'granted' | 'refused' | 'failed' | 'pending'
  error: string | null
  latencyMs: number | null
}

interface Decision {
  attempts: number
  votes: NodeVote[]
}

/** The entry point of the libraries built on this one: each call with what decided it. */
interface Decided {
  acquire(lock: DistributedLock, resource: string | string[], ttlMs?: number, options?: object): Promise<Decision & { handle: LockHandle | null }>
  extend(lock: DistributedLock, handle: LockHandle, ttlMs?: number): Promise<Decision & { extended: boolean }>
  release(lock: DistributedLock, handle: LockHandle): Promise<Decision & { released: boolean }>
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const decided = (require('..') as Record<symbol, Decided>)[Symbol.for('redis-quorum-lock.decided')]

function count(votes: NodeVote[], vote: NodeVote['vote']): number {
  return votes.filter((entry) => entry.vote === vote).length
}

async function rejection(promise: Promise<unknown>): Promise<LockError & Partial<Decision>> {
  try {
    await promise
  } catch (error) {
    return error as LockError & Partial<Decision>
  }
  assert.fail('resolved')
}

/** Pauses `nodes` for the length of `work`, however it ends. */
async function paused<T>(nodes: RedisNode[], work: () => Promise<T>): Promise<T> {
  for (const node of nodes) node.pause()
  try {
    return await work()
  } finally {
    for (const node of nodes) node.resume()
  }
}

describe('per-node votes of acquire, extend and release', () => {
  const t = useCluster(3, { flush: 'each' })

  test('every node named in order; a grant, an extension and a release each with its latency', async () => {
    const lock = t.newLock({ retry_count: 0 })
    const acquired = await decided.acquire(lock, 'voted', 10_000)
    assert.ok(acquired.handle, 'acquired')
    assert.equal(acquired.attempts, 1)
    assert.equal(acquired.handle.attempts, 1)
    assert.deepEqual(acquired.votes.map((entry) => entry.node), t.cluster.addresses)
    assert.ok(count(acquired.votes, 'granted') >= 2, JSON.stringify(acquired.votes))
    for (const entry of acquired.votes) {
      assert.ok(entry.vote === 'granted' || entry.vote === 'pending', JSON.stringify(entry))
      assert.equal(entry.error, null)
      if (entry.vote === 'granted') assert.ok(typeof entry.latencyMs === 'number' && entry.latencyMs >= 0, JSON.stringify(entry))
      else assert.equal(entry.latencyMs, null)
    }

    const extended = await decided.extend(lock, acquired.handle, 20_000)
    assert.equal(extended.extended, true)
    assert.equal(extended.attempts, 1)
    assert.ok(count(extended.votes, 'granted') >= 2, JSON.stringify(extended.votes))

    const released = await decided.release(lock, acquired.handle)
    assert.equal(released.released, true)
    assert.ok(count(released.votes, 'granted') >= 2, JSON.stringify(released.votes))
    const again = await decided.release(lock, acquired.handle)
    assert.deepEqual(again, { released: false, attempts: 0, votes: [] }, 'a lock released before asks no node')
  })

  test('a resource held elsewhere: refusals, and the attempts of every retry', async () => {
    const holder = t.newLock()
    assert.ok(await holder.acquire('taken', 10_000))
    const lock = t.newLock({ retry_count: 2, retry_delay_ms: 10, retry_jitter_ms: 0 })
    const seen = await decided.acquire(lock, 'taken', 10_000)
    assert.equal(seen.handle, null)
    assert.equal(seen.attempts, 3)
    assert.ok(count(seen.votes, 'refused') >= 2, JSON.stringify(seen.votes))
    assert.equal(count(seen.votes, 'granted'), 0)
  })

  test('a paused node is pending when a majority decided without it', async () => {
    const lock = t.newLock({ retry_count: 0, command_timeout_ms: 200 })
    assert.ok(await lock.acquire('warm-up', 1_000), 'connections open')
    const seen = await paused([t.cluster.nodes[2]], () => decided.acquire(lock, 'one-paused', 10_000))
    assert.ok(seen.handle)
    assert.deepEqual(
      seen.votes.map((entry) => entry.vote),
      ['granted', 'granted', 'pending'],
    )
    assert.deepEqual(seen.votes[2], { node: t.cluster.addresses[2], vote: 'pending', error: null, latencyMs: null })
  })

  test('a paused majority: the rejection carries the attempts and the failed votes with their reasons', async () => {
    const lock = t.newLock({ retry_count: 0, command_timeout_ms: 100 })
    assert.ok(await lock.acquire('warm-up', 1_000), 'connections open')
    const error = await paused(t.cluster.nodes.slice(1), () => rejection(decided.acquire(lock, 'two-paused', 10_000)))
    assert.equal(error.code, 'ERR_QUORUM_UNAVAILABLE')
    assert.equal(error.attempts, 1)
    const votes = error.votes ?? []
    assert.equal(votes[0].vote, 'granted')
    for (const entry of votes.slice(1)) {
      assert.equal(entry.vote, 'failed', JSON.stringify(entry))
      assert.match(entry.error ?? '', /no reply within 100 ms/)
      assert.equal(entry.latencyMs, null)
    }
    assert.deepEqual(
      error.nodeErrors,
      votes.slice(1).map((entry) => ({ node: entry.node, message: entry.error })),
    )
  })

  test('without asking, a call says nothing of its votes', async () => {
    const lock = t.newLock({ retry_count: 0 })
    const handle = await lock.acquire('quiet', 10_000)
    assert.ok(handle)
    assert.equal('votes' in handle, false)
    assert.equal(await lock.extend(handle, 10_000), true)
    assert.equal(await lock.release(handle), true)
  })
})

/**
 * Nodes without persistence, started moments ago, are in the restart
 * quarantine for the longest TTL (30 s here): they answer, but their votes
 * do not count.
 */
describe('the votes of quarantined nodes', () => {
  let nodes: RedisNode[]

  before(async () => {
    nodes = [await RedisNode.start(), await RedisNode.start({ durable: false }), await RedisNode.start({ durable: false })]
  })
  after(async () => {
    for (const node of nodes) await node.stop()
  })

  test('a grant of a quarantined node is a failed vote that says why', async () => {
    const lock = new DistributedLock({ redis_nodes: nodes.map((node) => node.address), retry_count: 0 })
    try {
      const error = await rejection(decided.acquire(lock, 'quarantined', 30_000))
      assert.equal(error.code, 'ERR_QUORUM_UNAVAILABLE')
      const votes = error.votes ?? []
      // The durable node's grant may come after the quarantined ones decided.
      assert.ok(['granted', 'pending'].includes(votes[0].vote), JSON.stringify(votes[0]))
      assert.deepEqual(votes.slice(1).map((entry) => entry.vote), ['failed', 'failed'])
      for (const entry of votes.slice(1)) {
        assert.match(entry.error ?? '', /restarted less than max_ttl_ms ago/)
        assert.ok(typeof entry.latencyMs === 'number', 'it answered')
      }
    } finally {
      await lock.close()
    }
  })
})

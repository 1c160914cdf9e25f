import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import { describe, test } from 'node:test'

import { type DistributedLock, type LockHandle } from '..'
import { useCluster } from './helpers/fixture'
import { waitFor } from './helpers/redis'

/** What one node answered in the attempt that decided a call (binding.d.ts `NodeVote`). */
interface NodeVote {
  vote: 'granted' | 'refused' | 'failed' | 'pending'
  error: string | null
  latencyMs: number | null
}

/** The entry point of the libraries built on this one: each call with what decided it. */
interface Decided {
  acquire(lock: DistributedLock, resource: string, ttlMs: number, options?: object): Promise<{ attempts: number; votes: NodeVote[]; handle: LockHandle | null }>
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const decided = (require('..') as Record<symbol, Decided>)[Symbol.for('redis-quorum-lock.decided')]

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// A node paused for longer than the stall limit (two seconds at least)
// still holds, in its socket, the commands sent to it before the pause: they
// run when it resumes. Whatever undoes them must reach it after them.
describe('a node that stops answering for a while', () => {
  const t = useCluster(3, { flush: 'each' })

  test('a release issued while it was stalled follows the write there: the resumed node does not keep the released key', async () => {
    const lock = t.newLock({ retry_count: 0 })
    const warm = await lock.acquire('warm', 10_000)
    assert.ok(warm, 'the connections are open')
    assert.equal(await lock.release(warm), true)
    const paused = t.cluster.nodes[2]
    const handles: LockHandle[] = []
    paused.pause()
    try {
      const handle = await lock.acquire('stalled', 30_000)
      assert.ok(handle, 'the other two nodes grant')
      handles.push(handle)
      // The node stays paused past the stall limit; the release goes out as
      // soon as the lock gives up waiting for it (its votes fail at once).
      await waitFor('the paused node to be given up on', async () => {
        const { handle: probe, votes } = await decided.acquire(lock, `probe-${handles.length}`, 30_000)
        assert.ok(probe)
        handles.push(probe)
        if (/no reply for|reconnecting in/.test(votes[2].error ?? '')) return true
        await sleep(50)
        return false
      }, 10_000)
      for (const held of handles) assert.equal(await lock.release(held), true)
    } finally {
      paused.resume()
    }
    await waitFor('the resumed node to answer', async () => (await paused.redis().ping()) === 'PONG')
    for (const held of handles) await t.cluster.settled(`redlock:${held.resource}`, [null, null, null])
  })

  test('while it is stalled its votes fail at once, saying so, and are not queued behind the commands it has not answered', async () => {
    const lock = t.newLock({ retry_count: 0 })
    const [, releasesBefore] = await t.cluster.calls('evalsha')
    const warm = await lock.acquire('warm', 10_000)
    assert.ok(warm)
    assert.equal(await lock.release(warm), true)
    // Both were decided at quorum: once node 1 ran the release, it has run the SET before it, so the count below starts after it.
    await waitFor('node 1 to run the release', async () => (await t.cluster.calls('evalsha'))[1] > releasesBefore)
    const paused = t.cluster.nodes[1]
    const [, setsBefore] = await t.cluster.calls('set')
    const handles: LockHandle[] = []
    let queued = 0
    paused.pause()
    try {
      await waitFor('the paused node to count as stalled', async () => {
        const { handle, votes } = await decided.acquire(lock, `backlog-${handles.length}`, 30_000)
        assert.ok(handle, 'the other two nodes grant')
        handles.push(handle)
        const vote = votes[1]
        if (vote.vote === 'failed' && /no reply for \d+ ms/.test(vote.error ?? '')) {
          assert.match(vote.error ?? '', /\d+ commands? waiting/)
          assert.ok((vote.latencyMs ?? Infinity) < 50, `the stalled vote took ${vote.latencyMs} ms`)
          return true
        }
        queued++
        await sleep(100)
        return false
      }, 6_000)
      for (let i = 0; i < 20; i++) {
        const { handle, votes } = await decided.acquire(lock, `not-sent-${i}`, 30_000)
        assert.ok(handle)
        handles.push(handle)
        assert.equal(votes[1].vote, 'failed')
      }
      for (const handle of handles) assert.equal(await lock.release(handle), true)
    } finally {
      paused.resume()
    }
    await waitFor('the resumed node to run the writes it had', async () => (await t.cluster.calls('set'))[1] >= setsBefore + queued)
    for (const handle of handles) await t.cluster.settled(`redlock:${handle.resource}`, [null, null, null])
    assert.equal((await t.cluster.calls('set'))[1], setsBefore + queued, 'only the writes issued before the stall reached the node')
  })
})

describe('calls reach every node in the order they are made', () => {
  const t = useCluster(3, { flush: 'each' })

  test('an acquire made right after a release that is not awaited finds the lock free', async () => {
    const lock = t.newLock({ retry_count: 0 })
    let handle = await lock.acquire('in-order', 10_000)
    let refused = 0
    for (let round = 0; round < 200; round++) {
      assert.ok(handle)
      const releasing = lock.release(handle)
      const next = await lock.acquire('in-order', 10_000)
      assert.equal(await releasing, true)
      if (next === null) refused++
      handle = next ?? (await lock.acquire('in-order', 10_000, { wait_ms: 5_000 }))
    }
    assert.ok(handle)
    assert.equal(await lock.release(handle), true)
    assert.equal(refused, 0, `${refused} of 200 acquires were refused by the release issued before them`)
  })
})

describe('a node that lost the lock\'s scripts (NOSCRIPT)', () => {
  const t = useCluster(3, { flush: 'each' })

  test('still gets the release: it is sent again, and the key goes there too', async () => {
    const lock = t.newLock({ retry_count: 0 })
    const handle = await lock.acquire('forgotten', 10_000)
    assert.ok(handle)
    await t.cluster.settled('redlock:forgotten', [handle.value, handle.value, handle.value])
    await t.cluster.nodes[0].redis().script('FLUSH')
    assert.equal(await lock.release(handle), true)
    await waitFor('the lock to have seen the NOSCRIPT', async () => /NOSCRIPT/.test((await lock.health()).nodes[0].lastError ?? ''))
    await t.cluster.settled('redlock:forgotten', [null, null, null])
  })

  test('still gets the clean-up of a failed attempt: the key it granted goes', async () => {
    const holder = t.newLock({ retry_count: 0 })
    const held = await holder.acquire('contended', 10_000)
    assert.ok(held)
    await t.cluster.settled('redlock:contended', [held.value, held.value, held.value])
    const node = t.cluster.nodes[0]
    await node.redis().del('redlock:contended')
    const lock = t.newLock({ retry_count: 0 })
    const warm = await lock.acquire('warm', 10_000)
    assert.ok(warm, 'the connections are open and the scripts loaded')
    assert.equal(await lock.release(warm), true)
    await node.redis().script('FLUSH')
    const [setsBefore] = await t.cluster.calls('set')
    assert.equal(await lock.acquire('contended', 10_000), null, 'two nodes refuse')
    assert.equal((await t.cluster.calls('set'))[0], setsBefore + 1, 'the first node took the write')
    await t.cluster.settled('redlock:contended', [null, held.value, held.value])
    assert.equal(await holder.release(held), true)
  })
})

/**
 * A TCP relay to `port` that can stop relaying, both ways, on the
 * connections that subscribed, keeping them open: what a NAT or load
 * balancer that forgot a connection does to it.
 */
async function relay(port: number): Promise<{ port: number; subscriptions: () => number; blackHole: () => void; close: () => void }> {
  const subscribed = new Set<net.Socket>()
  const holes = new Set<net.Socket>()
  let opened = 0
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1')
    const pipe = (from: net.Socket, to: net.Socket) =>
      from.on('data', (data: Buffer) => {
        if (holes.has(client)) return
        if (from === client && /SUBSCRIBE/i.test(data.toString('latin1')) && !subscribed.has(client)) {
          subscribed.add(client)
          opened++
        }
        to.write(data)
      })
    pipe(client, upstream)
    pipe(upstream, client)
    const end = () => {
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as net.AddressInfo).port,
    subscriptions: () => opened,
    blackHole: () => {
      for (const socket of subscribed) holes.add(socket)
    },
    close: () => {
      server.close()
      for (const socket of subscribed) socket.destroy()
    },
  }
}

describe('a subscription that dies silently', () => {
  const t = useCluster(3, { flush: 'each' })

  test('is noticed and opened again, so a release still wakes the waiter at once', async () => {
    const relays = await Promise.all(t.cluster.nodes.map((node) => relay(node.port)))
    try {
      const nodes = relays.map((r) => `127.0.0.1:${r.port}`)
      const holder = t.newLock({ redis_nodes: nodes, retry_count: 0 })
      const waiter = t.newLock({ redis_nodes: nodes, retry_delay_ms: 60_000, retry_jitter_ms: 0 })
      const held = await holder.acquire('silent', 60_000)
      assert.ok(held)
      const waiting = waiter.acquire('silent', 60_000, { wait_ms: 50_000 })
      await waitFor('the waiter to subscribe', () => relays.every((r) => r.subscriptions() === 1))
      for (const r of relays) r.blackHole()
      // Pinged within the next 15 s, the dead subscriptions are opened again.
      await waitFor('the subscriptions to be opened again', () => relays.every((r) => r.subscriptions() === 2), 25_000)
      await waitFor('the waiter to subscribe again', async () =>
        (await Promise.all(t.cluster.nodes.map(async (node) => Number(((await node.redis().call('PUBSUB', 'NUMSUB', 'redlock:silent')) as [string, number])[1])))).every((n) => n >= 1))
      const released = Date.now()
      assert.equal(await holder.release(held), true)
      const next = await waiting
      const handover = Date.now() - released
      assert.ok(next, 'the waiter got the lock')
      assert.ok(handover < 500, `hand-over took ${handover} ms: woken by the release, not the 60 s lease`)
      assert.equal(await waiter.release(next), true)
    } finally {
      for (const r of relays) r.close()
    }
  })
})

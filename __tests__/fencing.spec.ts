import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { describe, test } from 'node:test'

import type { LockError } from '..'
import { useCluster } from './helpers/fixture'
import { RedisNode, waitFor } from './helpers/redis'

const ROOT = path.join(__dirname, '..')

interface Hold {
  worker: number
  token: string
  acquired: string
  released: string
}

/**
 * One OS process that takes `resource` `count` times with fencing, waiting
 * for each release, and prints one line per hold: its token and the
 * monotonic times (shared by every process on the machine) at which acquire
 * resolved and release was called.
 */
function fencedWorker(worker: number, addresses: string[], resource: string, count: number): Promise<Hold[]> {
  const script = `
    const { DistributedLock } = require(${JSON.stringify(ROOT)})
    const lock = new DistributedLock({ redis_nodes: ${JSON.stringify(addresses)}, lock_ttl_ms: 2000, command_timeout_ms: 200 })
    ;(async () => {
      const lines = []
      for (let done = 0; done < ${count}; ) {
        let handle = null
        try {
          handle = await lock.acquire(${JSON.stringify(resource)}, 2000, { fencing: true, wait_ms: 10000 })
        } catch (error) {
          if (error.code !== 'ERR_QUORUM_UNAVAILABLE') throw error
          continue
        }
        if (handle === null) continue
        const acquired = process.hrtime.bigint()
        await new Promise((resolve) => setImmediate(resolve))
        const released = process.hrtime.bigint()
        await lock.release(handle)
        lines.push(JSON.stringify({ worker: ${worker}, token: String(handle.fencingToken), acquired: String(acquired), released: String(released) }))
        done++
      }
      process.stdout.write(lines.join('\\n') + '\\n')
      await lock.close()
    })().catch((error) => { console.error(error); process.exit(1) })
  `
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (chunk) => (out += chunk))
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`worker ${worker} exited with ${code}`))
      resolve(out.trim().split('\n').map((line) => JSON.parse(line) as Hold))
    })
  })
}

/** Every hold in the order it began: no two overlap, and each token exceeds the one before. */
function checkOrder(holds: Hold[]): void {
  const ordered = [...holds].sort((a, b) => (BigInt(a.acquired) < BigInt(b.acquired) ? -1 : 1))
  for (let i = 1; i < ordered.length; i++) {
    const [before, next] = [ordered[i - 1], ordered[i]]
    assert.ok(BigInt(before.released) <= BigInt(next.acquired), `holds ${i - 1} and ${i} overlap`)
    assert.ok(
      BigInt(next.token) > BigInt(before.token),
      `token ${next.token} (worker ${next.worker}) after ${before.token} (worker ${before.worker})`,
    )
  }
}

describe('fencing tokens', () => {
  const t = useCluster(3, { lock: { retry_count: 0, command_timeout_ms: 200 } })

  test('a fenced handle carries a bigint token written back to the counters; a plain one carries null', async () => {
    const plain = await t.lock.acquire('plain', 5_000)
    assert.ok(plain)
    assert.equal(plain.fencingToken, null)
    await t.lock.release(plain)
    const handle = await t.lock.acquire(['fence-a', 'fence-b'], 5_000, { fencing: true })
    assert.ok(handle)
    assert.equal(typeof handle.fencingToken, 'bigint')
    const token = String(handle.fencingToken)
    await waitFor('every node to hold the token on both counters', async () => {
      const counters = await Promise.all(t.cluster.nodes.map((node) => node.redis().mget('redlock:fence:fence-a', 'redlock:fence:fence-b')))
      return counters.every((pair) => pair[0] === token && pair[1] === token)
    })
    assert.deepEqual(await t.cluster.pttls('redlock:fence:fence-a'), [-1, -1, -1], 'counters have no TTL')
    assert.ok((await t.cluster.pttls('redlock:fence-a')).every((ttl) => ttl > 0), 'lock keys keep theirs')
    await t.lock.release(handle)
    const next = await t.lock.acquire('fence-b', 5_000, { fencing: true })
    assert.ok(next?.fencingToken)
    assert.ok(next.fencingToken > handle.fencingToken!)
    await t.lock.release(next)
  })

  test('tokens start from the node clock in microseconds', async () => {
    const [seconds] = await t.cluster.nodes[0].redis().time()
    const handle = await t.lock.acquire('fresh-resource', 5_000, { fencing: true })
    assert.ok(handle?.fencingToken)
    assert.ok(handle.fencingToken >= BigInt(seconds) * 1_000_000n, `${handle.fencingToken}`)
    await t.lock.release(handle)
  })

  test('when raising the counters fails on a majority, there is no handle and no lock key left', async () => {
    // On two nodes the counters may be read but not written: the root
    // permissions cover the lock key only, and a selector lets the scripts
    // be called on the counters and GET them (not SET). Phase 1 succeeds
    // there, phase 2 is refused by the node itself.
    const restricted = t.cluster.nodes.slice(0, 2)
    for (const node of restricted) await node.redis().call('ACL', 'SETUSER', 'default', 'resetkeys', '~redlock:phase-two', '(~redlock:* +evalsha +get)')
    try {
      await assert.rejects(t.lock.acquire('phase-two', 5_000, { fencing: true }), (error: LockError) => {
        assert.equal(error.code, 'ERR_QUORUM_UNAVAILABLE')
        assert.equal(error.nodeErrors?.length, 2)
        // Refused inside the script (phase 2's SET), not the call itself.
        for (const nodeError of error.nodeErrors!) assert.match(nodeError.message, /script can't access at least one of the keys/)
        return true
      })
      await t.cluster.settled('redlock:phase-two', [null, null, null])
      const plain = await t.lock.acquire('phase-two', 5_000)
      assert.ok(plain, 'the same nodes grant a lock without fencing')
      await t.lock.release(plain)
    } finally {
      for (const node of restricted) await node.redis().call('ACL', 'SETUSER', 'default', 'allkeys', 'clearselectors')
    }
  })

  test('tokens strictly increase over thousands of contended acquisitions in four processes and a node restart without its data', async () => {
    // The third node keeps no data: killed and restarted at once, it comes
    // back with empty counters. The quarantine keeps its vote out for the
    // longest TTL after each start; its clock floor keeps its counters up.
    const volatile = await RedisNode.start({ durable: false })
    const nodes = [...t.cluster.nodes.slice(0, 2), volatile]
    const addresses = nodes.map((node) => node.address)
    try {
      const running = [0, 1, 2, 3].map((worker) => fencedWorker(worker, addresses, 'contended', 600))
      await waitFor('the workers to have taken the lock a while', async () => {
        const counter = await nodes[0].redis().get('redlock:fence:contended')
        return counter !== null
      }, 10_000)
      await new Promise((resolve) => setTimeout(resolve, 300))
      await volatile.kill()
      await volatile.start()
      const holds = (await Promise.all(running)).flat()
      assert.equal(holds.length, 2400)
      assert.equal(new Set(holds.map((hold) => hold.token)).size, holds.length, 'every token is unique')
      checkOrder(holds)
    } finally {
      await volatile.stop()
    }
  })
})

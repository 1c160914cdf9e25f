import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { describe, test } from 'node:test'

import { useCluster } from './helpers/fixture'
import { waitFor } from './helpers/redis'

const ROOT = path.resolve(__dirname, '..')

/**
 * What keeps a process alive is the lock's calls in flight, and nothing
 * else: these run in a child process, where an unsettled call would let
 * Node exit early and a miscounted one would keep it from exiting.
 */
describe('the event loop and calls in flight', () => {
  const t = useCluster(3)

  test('a lease lost with nothing in flight, then one more call: it settles, and the process exits after close()', async () => {
    const script = `
      const { DistributedLock } = require(${JSON.stringify(ROOT)})
      const say = (line) => process.stdout.write(line + '\\n')
      ;(async () => {
        const lock = new DistributedLock({ redis_nodes: ${JSON.stringify(t.cluster.addresses)}, retry_count: 0, command_timeout_ms: 100 })
        const handle = await lock.acquire('lost-alone', 600, { auto_extend: true })
        if (!handle) throw new Error('not acquired')
        // Only this timer keeps the loop alive until the loss is known.
        const alive = setInterval(() => {}, 1000)
        const lost = new Promise((resolve) => handle.signal.addEventListener('abort', resolve))
        say('held')
        await lost
        clearInterval(alive)
        say('lost')
        const report = await lock.health()
        say('settled ' + report.nodes.length)
        await lock.close()
        say('closed')
      })()
    `
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    const lines: string[] = []
    let closedAt = 0
    child.stdout.on('data', (data: Buffer) => {
      for (const line of data.toString().split('\n').filter(Boolean)) {
        lines.push(line)
        if (line === 'closed') closedAt = Date.now()
      }
    })
    const exited = once(child, 'exit')
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    const majority = t.cluster.nodes.slice(1)
    try {
      await waitFor('the child to hold the lease', () => lines.includes('held'), 10_000)
      for (const node of majority) node.pause()
      await waitFor('the lease to be lost', () => lines.includes('lost') || child.exitCode !== null, 10_000)
    } finally {
      for (const node of majority) node.resume()
    }
    const [code, signal] = (await exited) as [number | null, string | null]
    clearTimeout(killer)
    assert.deepEqual(lines, ['held', 'lost', 'settled 3', 'closed'], 'the call after the loss settled')
    assert.equal(signal, null, 'exited by itself')
    assert.equal(code, 0)
    assert.ok(Date.now() - closedAt < 2_000, `exited ${Date.now() - closedAt} ms after close()`)
  })
})

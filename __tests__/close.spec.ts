import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { describe, test } from 'node:test'

import { useCluster } from './helpers/fixture'

describe('close', () => {
  const t = useCluster(3)

  test('releases what the instance holds, then every call rejects with ERR_LOCK_CLOSED', async () => {
    const lock = t.newLock()
    const one = await lock.acquire('held-1', 30_000)
    const two = await lock.acquire(['held-2', 'held-3'], 30_000)
    const released = await lock.acquire('released', 30_000)
    assert.ok(one && two && released)
    assert.equal(await lock.release(released), true)
    const other = t.newLock()
    const foreign = await other.acquire('not-ours', 30_000)
    assert.ok(foreign)

    await lock.close()
    for (const key of ['held-1', 'held-2', 'held-3']) {
      await t.cluster.settled(`redlock:${key}`, [null, null, null])
    }
    await t.cluster.settled('redlock:not-ours', [foreign.value, foreign.value, foreign.value])

    for (const call of [() => lock.acquire('again'), () => lock.extend(one), () => lock.release(one), () => one.release()]) {
      await assert.rejects(call(), { code: 'ERR_LOCK_CLOSED', message: /closed/ })
    }
    await lock.close()
  })

  test('close is idempotent and calls made at the same moment resolve', async () => {
    const lock = t.newLock()
    const first = lock.close()
    const second = lock.close()
    assert.equal(first, second)
    await Promise.all([first, second])
    await lock.close()
  })

  test('acquires in flight when close is called settle with ERR_LOCK_CLOSED or a handle that close released', async () => {
    const holder = t.newLock()
    const held = await holder.acquire('busy', 30_000)
    assert.ok(held)
    const lock = t.newLock({ retry_count: -1, retry_delay_ms: 50 })
    const waiting = lock.acquire('busy', 30_000).then(
      () => 'resolved',
      (error: { code: string }) => error.code,
    )
    const racing = Promise.allSettled(Array.from({ length: 200 }, (_, i) => lock.acquire(`race-${i}`, 30_000)))
    await new Promise((resolve) => setTimeout(resolve, 30))
    await lock.close()
    assert.equal(await waiting, 'ERR_LOCK_CLOSED')
    const results = await racing
    for (const result of results) {
      if (result.status === 'rejected') assert.equal((result.reason as { code: string }).code, 'ERR_LOCK_CLOSED')
    }
    for (let i = 0; i < results.length; i++) {
      await t.cluster.settled(`redlock:race-${i}`, [null, null, null])
    }
  })

  test('the process exits on its own right after close()', async () => {
    const script = `
      const { DistributedLock } = require(${JSON.stringify(path.resolve(__dirname, '..'))})
      ;(async () => {
        const lock = new DistributedLock({ redis_nodes: ${JSON.stringify(t.cluster.addresses)} })
        const handle = await lock.acquire('child-lock', 30000)
        if (!handle) throw new Error('not acquired')
        await lock.close()
        process.stdout.write('closed\\n')
      })()
    `
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
    let closedAt = 0
    child.stdout.on('data', (data: Buffer) => {
      if (data.toString().includes('closed')) closedAt = Date.now()
    })
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    const [code] = await once(child, 'exit')
    clearTimeout(killer)
    assert.equal(code, 0, 'exited by itself')
    assert.ok(closedAt > 0, 'reached close()')
    assert.ok(Date.now() - closedAt < 1_000, `exited ${Date.now() - closedAt} ms after close()`)
    await t.cluster.settled('redlock:child-lock', [null, null, null])
  })

  test('an idle lock never keeps the process alive, even without close()', async () => {
    const script = `
      const { DistributedLock } = require(${JSON.stringify(path.resolve(__dirname, '..'))})
      ;(async () => {
        const lock = new DistributedLock({ redis_nodes: ${JSON.stringify(t.cluster.addresses)} })
        const handle = await lock.acquire('idle-lock', 1000)
        await lock.release(handle)
      })()
    `
    const child = spawn(process.execPath, ['-e', script], { stdio: 'inherit' })
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    const [code, signal] = await once(child, 'exit')
    clearTimeout(killer)
    assert.equal(signal, null, 'was not killed')
    assert.equal(code, 0)
  })
})

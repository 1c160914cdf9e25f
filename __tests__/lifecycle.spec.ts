import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { describe, test } from 'node:test'

import type { LockError, LockHandle } from '..'
import { useCluster } from './helpers/fixture'
import { waitFor } from './helpers/redis'

const ROOT = path.resolve(__dirname, '..')

/** Runs `script` in a child node process with the package as `lib`; resolves with its stdout. */
async function child(script: string, timeoutMs = 20_000): Promise<{ code: number | null; out: string }> {
  const proc = spawn(process.execPath, ['-e', `const lib = require(${JSON.stringify(ROOT)});\n${script}`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  proc.stdout.on('data', (data: Buffer) => {
    out += data.toString()
  })
  const killer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
  const [code] = (await once(proc, 'exit')) as [number | null]
  clearTimeout(killer)
  return { code, out }
}

function busy(ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) {
    // the event loop is blocked on purpose
  }
}

describe('lease lifecycle', () => {
  const t = useCluster(3, { lock: { retry_count: 0, command_timeout_ms: 100 }, flush: 'each' })

  test('the native watchdog keeps a lease alive while the event loop is blocked for several TTLs', async () => {
    const handle = await t.lock.acquire('busy', 400, { auto_extend: true })
    assert.ok(handle)
    // Another process tries to take the lock all through the busy period.
    const rival = child(`
      const other = new lib.DistributedLock({ redis_nodes: ${JSON.stringify(t.cluster.addresses)}, retry_count: 0 })
      ;(async () => {
        let attempts = 0, won = 0
        const until = Date.now() + 1500
        while (Date.now() < until) {
          attempts++
          if (await other.acquire('busy', 10000)) won++
          await new Promise((r) => setTimeout(r, 25))
        }
        console.log(JSON.stringify({ attempts, won }))
        await other.close()
      })()
    `)
    busy(2_000)
    const { code, out } = await rival
    assert.equal(code, 0)
    const { attempts, won } = JSON.parse(out) as { attempts: number; won: number }
    assert.ok(attempts > 10, `${attempts} attempts`)
    assert.equal(won, 0, 'another instance got the lock while the loop was blocked')
    await t.cluster.settled('redlock:busy', [handle.value, handle.value, handle.value])
    assert.equal(handle.signal.aborted, false)
    assert.equal(await t.lock.release(handle), true)
    await t.cluster.settled('redlock:busy', [null, null, null])
  })

  test('a lease lost while a majority is paused aborts the signal with ERR_LOCK_LOST', async () => {
    const handle = await t.lock.acquire('paused', 600, { auto_extend: true })
    assert.ok(handle)
    const aborted = once(handle.signal, 'abort')
    t.cluster.nodes[0].pause()
    t.cluster.nodes[1].pause()
    try {
      await aborted
    } finally {
      t.cluster.nodes[0].resume()
      t.cluster.nodes[1].resume()
    }
    const reason = handle.signal.reason as LockError
    assert.ok(reason instanceof Error)
    assert.equal(reason.code, 'ERR_LOCK_LOST')
    assert.equal(await t.lock.release(handle), false, 'a lost lock has nothing left to release')
  })

  test('an auto-extended lease shortened by extend() is kept alive at its new length', async () => {
    const handle = await t.lock.acquire('shortened', 3_000, { auto_extend: true })
    assert.ok(handle)
    assert.equal(await handle.extend(600), true)
    // Past the shortened TTL, and before the watchdog's first turn for the acquire's 3 s.
    await new Promise((resolve) => setTimeout(resolve, 900))
    assert.equal(handle.signal.aborted, false)
    assert.deepEqual(await Promise.all(t.cluster.nodes.map((node) => node.redis().get('redlock:shortened'))), [handle.value, handle.value, handle.value])
    assert.equal(await t.lock.release(handle), true)
  })

  test('an auto-extended lease a majority refuses to extend aborts the signal at once', async () => {
    const started = Date.now()
    const handle = await t.lock.acquire('refused', 3_000, { auto_extend: true })
    assert.ok(handle)
    const aborted = once(handle.signal, 'abort')
    await Promise.all(t.cluster.nodes.map((node) => node.redis().set('redlock:refused', 'foreign', 'PX', 10_000)))
    await aborted
    // The watchdog's first extension is due 1 to 1.5 s in; a refusal is final, not tried again until the lease runs out.
    assert.ok(Date.now() - started < 2_000, `aborted ${Date.now() - started} ms after the acquire`)
    assert.equal((handle.signal.reason as LockError).code, 'ERR_LOCK_LOST')
  })

  test('a lease whose extension is still unanswered when its validity ends aborts the signal by then', async () => {
    // A command timeout as long as the TTL: the watchdog's extension, sent a third to a half into
    // the lease, would be waited for until 0.7 to 1 s past its end.
    const lock = t.newLock({ retry_count: 0, command_timeout_ms: 2_000 })
    const handle = await lock.acquire('unanswered', 2_000, { auto_extend: true })
    assert.ok(handle)
    const aborted = once(handle.signal, 'abort').then(() => Date.now())
    t.cluster.nodes[0].pause()
    t.cluster.nodes[1].pause()
    let abortedAt: number
    try {
      abortedAt = await aborted
    } finally {
      t.cluster.nodes[0].resume()
      t.cluster.nodes[1].resume()
    }
    assert.ok(abortedAt <= handle.expiresAt + 300, `aborted ${abortedAt - handle.expiresAt} ms after the validity ended`)
  })

  test('a failed extend aborts the signal; a normal release does not', async () => {
    const kept = await t.lock.acquire('kept', 10_000)
    assert.ok(kept)
    const signal = kept.signal
    assert.equal(await t.lock.release(kept), true)
    assert.equal(signal.aborted, false)

    const lost = await t.lock.acquire('lost', 10_000)
    assert.ok(lost)
    await Promise.all(t.cluster.nodes.map((node) => node.redis().set('redlock:lost', 'foreign')))
    assert.equal(await lost.extend(), false)
    assert.equal(lost.signal.aborted, true, 'a signal first read after the loss is aborted too')
    assert.equal((lost.signal.reason as LockError).code, 'ERR_LOCK_LOST')
  })

  test('release stops the watchdog', async () => {
    const handle = await t.lock.acquire('stopped', 300, { autoExtend: true })
    assert.ok(handle)
    assert.equal(await t.lock.release(handle), true)
    // The release itself may still be on its way to the third node.
    await t.cluster.settled('redlock:stopped', [null, null, null])
    const after = await t.cluster.calls('evalsha')
    await new Promise((resolve) => setTimeout(resolve, 400))
    assert.deepEqual(await t.cluster.calls('evalsha'), after, 'no extension after release')
    assert.equal(handle.signal.aborted, false)
  })

  test('using returns the value, passes the signal and handle, and releases', async () => {
    let seen: LockHandle | null = null
    const value = await t.lock.using('job', async (signal, handle) => {
      assert.equal(signal.aborted, false)
      assert.equal(signal, handle.signal)
      seen = handle
      await t.cluster.settled('redlock:job', [handle.value, handle.value, handle.value])
      return 42
    })
    assert.equal(value, 42)
    assert.ok(seen)
    await t.cluster.settled('redlock:job', [null, null, null])
    assert.equal(await t.lock.using('job', 5_000, async () => 'ttl'), 'ttl')
    assert.equal(await t.lock.using(['job', 'other'], 5_000, { retry_count: 1 }, async (_, h) => h.resources.length), 2)
  })

  test('using rethrows the routine error and still releases', async () => {
    await assert.rejects(
      t.lock.using('failing', async () => {
        throw new Error('routine failed')
      }),
      /routine failed/,
    )
    await t.cluster.settled('redlock:failing', [null, null, null])
  })

  test('using rejects with ERR_LOCK_NOT_ACQUIRED when another owner holds the lock', async () => {
    const holder = await t.lock.acquire('held', 10_000)
    assert.ok(holder)
    let ran = false
    await assert.rejects(
      t.lock.using('held', async () => {
        ran = true
      }),
      { code: 'ERR_LOCK_NOT_ACQUIRED' },
    )
    assert.equal(ran, false)
    await assert.rejects(t.lock.using('held', 'not a routine' as never), { code: 'ERR_INVALID_ARG' })
  })

  test('await using releases at scope exit', async () => {
    {
      await using handle = await t.lock.acquire('scoped', 10_000).then((h) => {
        assert.ok(h)
        return h
      })
      await t.cluster.settled('redlock:scoped', [handle.value, handle.value, handle.value])
    }
    await t.cluster.settled('redlock:scoped', [null, null, null])
  })

  test('auto_extend must be a boolean', async () => {
    await assert.rejects(t.lock.acquire('x', 1000, { auto_extend: 'yes' as never }), { code: 'ERR_INVALID_ARG', message: /auto_extend/ })
  })

  test('watchdogs do not keep the process alive after close()', async () => {
    const { code, out } = await child(`
      ;(async () => {
        const lock = new lib.DistributedLock({ redis_nodes: ${JSON.stringify(t.cluster.addresses)} })
        const handles = await Promise.all([1, 2, 3].map((i) => lock.acquire('watched-' + i, 1000, { auto_extend: true })))
        if (handles.some((h) => !h)) throw new Error('not acquired')
        await lock.close()
        console.log(Date.now())
      })()
    `)
    assert.equal(code, 0)
    assert.ok(Date.now() - Number(out.trim()) < 1_000, 'exited within a second of close()')
    for (const i of [1, 2, 3]) await t.cluster.settled(`redlock:watched-${i}`, [null, null, null])
  })

  test('ten thousand auto-extended leases stay held', async () => {
    const many = t.newLock({ retry_count: 0 })
    const handles = await Promise.all(
      Array.from({ length: 10_000 }, (_, i) => many.acquire(`many-${i}`, 1_500, { auto_extend: true })),
    )
    assert.ok(handles.every(Boolean))
    await new Promise((resolve) => setTimeout(resolve, 3_000))
    // Two TTLs later every lease is still held by a majority.
    for (const i of [0, 4_999, 9_999]) {
      const ttls = await Promise.all(t.cluster.nodes.map((node) => node.redis().pttl(`redlock:many-${i}`)))
      assert.ok(ttls.filter((ttl) => ttl > 0).length >= 2, `many-${i}: PTTL ${ttls}`)
    }
    assert.ok(handles.every((h) => !h!.signal.aborted))
    await many.close()
    await waitFor('every lease released', async () => (await t.cluster.nodes[0].redis().dbsize()) === 0)
  })
})

import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import NpmRedlock from 'redlock'

import { ExecutionError, ResourceLockedError, type RedlockAbortSignal } from '../redlock.js'
import { useCluster } from './helpers/fixture'
import { waitFor } from './helpers/redis'
import { useRedlocks } from './redlock/clients'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Keeps the event loop busy for `ms`: no timer, no I/O callback runs meanwhile. */
function block(ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) {
    // busy
  }
}

describe('redlock: using', () => {
  const t = useCluster(3, { flush: 'each' })
  const r = useRedlocks()

  test('acquires, keeps the lease past its duration, and releases when the routine returns', async () => {
    const { redlock } = r.make(t.cluster)
    const value = await redlock.using(['x'], 500, { automaticExtensionThreshold: 200 }, async (signal) => {
      const [held] = await t.cluster.values('x')
      assert.equal(typeof held, 'string')
      await sleep(1_500)
      assert.equal(signal.aborted, false)
      assert.equal(signal.error, undefined)
      assert.deepEqual(await t.cluster.values('x'), [held, held, held], 'still held after three durations')
      return held
    })
    assert.equal(typeof value, 'string')
    await t.cluster.settled('x', [null, null, null])
  })

  test('the native watchdog keeps the lease while the event loop is blocked for three durations; npm redlock\'s timer loses it', async () => {
    const { redlock } = r.make(t.cluster)
    await redlock.using(['blocked'], 500, { automaticExtensionThreshold: 200 }, async (signal) => {
      const [held] = await t.cluster.values('blocked')
      block(1_500)
      assert.deepEqual(await t.cluster.values('blocked'), [held, held, held])
      assert.equal(signal.aborted, false)
    })

    // The control: the same routine on npm redlock, whose extension is a JavaScript timer.
    // Its exports map names no types, so TypeScript (nodenext) infers the
    // class from its JavaScript, where it finds no `using`.
    const theirs = new NpmRedlock(r.clients(t.cluster), { retryCount: 0 }) as unknown as {
      using(resources: string[], duration: number, settings: object, routine: () => Promise<void>): Promise<void>
    }
    let seen: (string | null)[] = []
    const outcome = await theirs
      .using(['blocked-npm'], 500, { automaticExtensionThreshold: 200 }, async () => {
        block(1_500)
        seen = await t.cluster.values('blocked-npm')
      })
      .then(() => 'resolved', (error: unknown) => error)
    assert.deepEqual(seen, [null, null, null], 'expired under npm redlock')
    assert.ok(outcome instanceof Error, 'whose release of the expired lock then fails')
  })

  test('is exclusive: two Redlocks\' routines on one resource never run at once', async () => {
    const first = r.make(t.cluster).redlock
    const second = r.make(t.cluster).redlock
    let inside = 0
    let most = 0
    const routine = async (signal: RedlockAbortSignal) => {
      inside++
      most = Math.max(most, inside)
      await sleep(700)
      assert.equal(signal.aborted, false)
      inside--
    }
    const settings = { automaticExtensionThreshold: 200, retryCount: 50, retryDelay: 50 }
    await Promise.all([
      first.using(['y'], 500, settings, routine),
      second.using(['y'], 500, settings, routine),
    ])
    assert.equal(most, 1)
    await t.cluster.settled('y', [null, null, null])
  })

  test('a lease lost to a paused majority aborts the signal with signal.error, and using then rejects', async () => {
    const { redlock } = r.make(t.cluster)
    const emitted: Error[] = []
    redlock.on('error', (error: Error) => emitted.push(error))
    const [, b, c] = t.cluster.nodes
    let aborted: RedlockAbortSignal | null = null
    const outcome = redlock.using(['lost'], 1_000, { automaticExtensionThreshold: 200 }, async (signal) => {
      b.pause()
      c.pause()
      try {
        await waitFor('the signal to abort', () => signal.aborted, 5_000)
      } finally {
        b.resume()
        c.resume()
      }
      aborted = signal
      return 'done'
    })
    const error = await outcome.then(() => assert.fail('resolved'), (e: unknown) => e)
    assert.ok(error instanceof ExecutionError, 'the release of a lost lease rejects, as in redlock')
    const [release] = await Promise.all(error.attempts)
    assert.equal(release.votesFor.size, 0)
    assert.equal(release.votesAgainst.size, 3)
    assert.ok([...release.votesAgainst.values()].every((vote) => vote instanceof ResourceLockedError), 'no node has the lock any more')
    const signal = aborted as RedlockAbortSignal | null
    assert.ok(signal)
    assert.ok(signal.error instanceof ExecutionError)
    assert.match(signal.error.message, /lost/)
    assert.equal(signal.reason, signal.error)
    assert.ok(emitted.includes(signal.error), 'the loss is emitted on error')
  })

  test('the routine\'s error is rethrown and the lock released', async () => {
    const { redlock } = r.make(t.cluster)
    await assert.rejects(
      redlock.using(['fails'], 5_000, async () => {
        throw new Error('Insufficient balance.')
      }),
      { message: 'Insufficient balance.' },
    )
    await t.cluster.settled('fails', [null, null, null])
  })

  test('a resource held elsewhere: ExecutionError after retryCount + 1 attempts, and the routine never runs', async () => {
    const { redlock } = r.make(t.cluster)
    await redlock.acquire(['taken'], 10_000)
    let ran = false
    const error = await redlock
      .using(['taken'], 5_000, { retryCount: 2, retryDelay: 20 }, async () => {
        ran = true
      })
      .then(() => assert.fail('ran'), (e: unknown) => e)
    assert.ok(error instanceof ExecutionError)
    assert.equal(error.attempts.length, 3)
    assert.equal(ran, false)
  })

  test('a duration within 100 ms of automaticExtensionThreshold is refused with redlock\'s message', async () => {
    const { redlock } = r.make(t.cluster)
    await assert.rejects(redlock.using(['short'], 550, async () => {}), {
      message: 'A lock `duration` must be at least 100ms greater than the `automaticExtensionThreshold` setting.',
    })
    assert.deepEqual(await t.cluster.values('short'), [null, null, null])
  })
})

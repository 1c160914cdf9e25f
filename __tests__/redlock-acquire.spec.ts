import assert from 'node:assert/strict'
import { describe, test } from 'node:test'

import NpmRedlock from 'redlock'

import Redlock, { ExecutionError, Lock } from '../redlock.js'
import { useCluster } from './helpers/fixture'
import { waitFor } from './helpers/redis'
import { forOf, useRedlocks } from './redlock/clients'

/** Whether every node's PTTL is within 200 ms under `duration`, as redlock's tests check it. */
function near(pttls: number[], duration: number): boolean {
  return pttls.every((pttl) => pttl <= duration && pttl > duration - 200)
}

describe('redlock: acquire, extend and release a lock directly', () => {
  const t = useCluster(3, { flush: 'each' })
  const r = useRedlocks()

  test('a single lock: its value on every node, the PTTL of its duration, a new Lock from extend, nothing left after release', async () => {
    const { redlock, clients } = r.make(t.cluster)
    const before = Date.now()
    let lock = await redlock.acquire(['a'], 10_000)
    assert.ok(lock instanceof Lock)
    assert.deepEqual(lock.resources, ['a'])
    assert.equal(lock.redlock, redlock)
    assert.ok(lock.expiration > Date.now() && lock.expiration <= before + 10_000 - 102, `expiration ${lock.expiration - before} ms after the call`)
    await t.cluster.settled('a', [lock.value, lock.value, lock.value])
    assert.ok(near(await t.cluster.pttls('a'), 10_000), `PTTLs ${await t.cluster.pttls('a')}`)
    assert.equal(lock.attempts.length, 1)
    assert.deepEqual(forOf(await lock.attempts[0], clients), [0, 1, 2])

    const first = lock
    lock = await lock.extend(30_000)
    assert.notEqual(lock, first, 'extend resolves a new Lock')
    assert.equal(first.expiration, 0, 'and the one extended is expired')
    assert.equal(lock.value, first.value)
    assert.ok(lock.expiration > Date.now() + 29_000)
    await waitFor('every node to hold the extended TTL', async () => near(await t.cluster.pttls('a'), 30_000))
    assert.deepEqual(forOf(await lock.attempts[0], clients), [0, 1, 2])

    const result = await lock.release()
    assert.equal(result.attempts.length, 1)
    assert.equal(lock.expiration, 0)
    await t.cluster.settled('a', [null, null, null])
  })

  test('a multi-resource lock: every resource on every node, extended and released together', async () => {
    const { redlock } = r.make(t.cluster)
    let lock = await redlock.acquire(['a1', 'a2'], 10_000)
    for (const key of ['a1', 'a2']) {
      await t.cluster.settled(key, [lock.value, lock.value, lock.value])
      assert.ok(near(await t.cluster.pttls(key), 10_000))
    }
    lock = await redlock.extend(lock, 30_000)
    for (const key of ['a1', 'a2']) {
      await waitFor(`${key} to be extended everywhere`, async () => near(await t.cluster.pttls(key), 30_000))
    }
    await redlock.release(lock)
    await t.cluster.settled('a1', [null, null, null])
    await t.cluster.settled('a2', [null, null, null])
  })

  test('locks expire by themselves, and then the resource can be locked again', async () => {
    const { redlock } = r.make(t.cluster, { retryCount: 0 })
    const lock = await redlock.acquire(['d'], 200)
    await waitFor('the lock to expire on every node', async () => (await t.cluster.values('d')).every((value) => value === null))
    const again = await redlock.acquire(['d'], 200)
    assert.notEqual(again.value, lock.value)
    await t.cluster.settled('d', [again.value, again.value, again.value])
  })

  test('a duration that is not an integer is refused with redlock\'s message, one beyond 2^31-1 by the engine', async () => {
    const { redlock } = r.make(t.cluster)
    await assert.rejects(redlock.acquire(['float'], 1000.5), { message: 'Duration must be an integer value in milliseconds.' })
    await assert.rejects(redlock.using(['float'], 1000.5, async () => {}), { message: 'Duration must be an integer value in milliseconds.' })
    await assert.rejects(redlock.acquire(['huge'], 2 ** 31), { code: 'ERR_INVALID_ARG' })
    await assert.rejects(redlock.acquire('huge' as never, 1000), { code: 'ERR_INVALID_ARG', message: /array of strings/ })
    assert.deepEqual(await t.cluster.values('huge'), [null, null, null])
  })

  test('extending a lock whose expiration has passed is refused before anything is sent', async () => {
    const { redlock } = r.make(t.cluster)
    const lock = await redlock.acquire(['stale'], 10_000)
    lock.expiration = Date.now() - 1
    const error = await redlock.extend(lock, 10_000).then(() => assert.fail('extended'), (e: unknown) => e)
    assert.ok(error instanceof ExecutionError)
    assert.equal(error.message, 'Cannot extend an already-expired lock.')
    assert.equal(error.attempts.length, 0)
  })

  test('a release that finds the lock gone rejects with ExecutionError after one attempt, not after every retry', async () => {
    const { redlock, clients } = r.make(t.cluster, { retryCount: 10, retryDelay: 200 })
    const lock = await redlock.acquire(['twice'], 10_000)
    await lock.release()
    const started = Date.now()
    const error = await lock.release().then(() => assert.fail('released twice'), (e: unknown) => e)
    assert.ok(error instanceof ExecutionError)
    assert.equal(error.attempts.length, 1)
    assert.ok(Date.now() - started < 1_000, 'no retry delays')
    const stats = await error.attempts[0]
    assert.equal(stats.votesFor.size, 0)
    assert.deepEqual([...stats.votesAgainst.keys()].map((client) => clients.indexOf(client)).sort(), [0, 1, 2])
  })

  test('with retryCount -1 a release that finds the lock gone still settles', async () => {
    const { redlock } = r.make(t.cluster, { retryCount: -1, retryDelay: 50 })
    const lock = await redlock.acquire(['forever'], 10_000)
    await lock.release()
    await assert.rejects(lock.release(), ExecutionError)
  })

  test('a lock won by retries that outlasted its duration is not handed back expired; npm redlock\'s is', async () => {
    const settings = { retryCount: 40, retryDelay: 50, retryJitter: 0 }
    const { redlock } = r.make(t.cluster, settings)
    const holder = await redlock.acquire(['slow'], 10_000)
    setTimeout(() => void holder.release(), 600)
    const lock = await redlock.acquire(['slow'], 300)
    assert.ok(lock.expiration > Date.now(), `expired ${Date.now() - lock.expiration} ms ago`)

    // The control: npm redlock counts the expiration from before its first attempt.
    const theirs = new NpmRedlock(r.clients(t.cluster), settings)
    const other = await redlock.acquire(['slow-npm'], 10_000)
    setTimeout(() => void other.release(), 600)
    const stale = await theirs.acquire(['slow-npm'], 300)
    assert.ok(stale.expiration < Date.now(), 'npm redlock hands back a lock that expired before it returned')
  })

  test('a lock that lost its keys cannot be extended: ExecutionError, and nothing of it is left', async () => {
    const { redlock } = r.make(t.cluster)
    const lock = await redlock.acquire(['lost'], 10_000)
    await t.cluster.settled('lost', [lock.value, lock.value, lock.value])
    await t.cluster.nodes[0].redis().set('lost', 'foreign')
    await t.cluster.nodes[1].redis().del('lost')
    await assert.rejects(lock.extend(10_000), ExecutionError)
    await t.cluster.settled('lost', ['foreign', null, null])
  })

  test('a larger per-call driftFactor shortens the expiration; a Lock not made by this Redlock is refused', async () => {
    const { redlock } = r.make(t.cluster)
    const plain = await redlock.acquire(['drift-a'], 10_000)
    const before = Date.now()
    const drifted = await redlock.acquire(['drift-b'], 10_000, { driftFactor: 0.2 })
    assert.ok(drifted.expiration <= before + 10_000 - 2_000, `expiration ${drifted.expiration - before} ms after the call`)
    assert.ok(plain.expiration - drifted.expiration > 1_500)
    const { redlock: other } = r.make(t.cluster)
    await assert.rejects(other.release(plain), { code: 'ERR_INVALID_ARG' })
    await assert.rejects(redlock.release(new Lock(redlock, ['drift-a'], plain.value, [], plain.expiration)), { code: 'ERR_INVALID_ARG' })
    await t.cluster.settled('drift-a', [plain.value, plain.value, plain.value])
  })

  test('the default export is the class, with redlock\'s defaults', () => {
    assert.equal(Redlock.default, Redlock)
    const { redlock } = r.make(t.cluster)
    assert.deepEqual(redlock.settings, {
      driftFactor: 0.01,
      retryCount: 10,
      retryDelay: 200,
      retryJitter: 100,
      automaticExtensionThreshold: 500,
    })
  })
})

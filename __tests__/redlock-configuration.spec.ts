import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'

import Redis from 'ioredis'
import NpmRedlock from 'redlock'

import Redlock, { ExecutionError } from '../redlock.js'
import { useCluster } from './helpers/fixture'
import { Cluster, waitFor } from './helpers/redis'
import { makeCertificates } from './helpers/tls'
import { useRedlocks } from './redlock/clients'
import { configure, describeFailure, grantedBy, isLocked, transfer, work } from './redlock/usage'

const PASSWORD = 'redlock-s3cret-Pa55'

describe('redlock: configuration from the ioredis clients', () => {
  const t = useCluster(3, { flush: 'each' })
  const r = useRedlocks()

  test('the clients are not used for locking: lazy clients that never connect still lock their nodes', async () => {
    const { redlock, clients } = r.make(t.cluster, {}, { lazyConnect: true })
    const lock = await redlock.acquire(['lazy'], 10_000)
    await t.cluster.settled('lazy', [lock.value, lock.value, lock.value])
    await lock.release()
    assert.deepEqual(clients.map((client) => client.status), ['wait', 'wait', 'wait'])
  })

  test('the clients\' keyPrefix is the prefix of every key, so npm redlock on the same clients is kept out', async () => {
    const { redlock } = r.make(t.cluster, { retryCount: 0 }, { keyPrefix: 'app:' })
    const lock = await redlock.acquire(['k'], 10_000)
    await t.cluster.settled('app:k', [lock.value, lock.value, lock.value])
    assert.deepEqual(await t.cluster.values('k'), [null, null, null])
    const theirs = new NpmRedlock(r.clients(t.cluster, { keyPrefix: 'app:' }), { retryCount: 0 })
    await assert.rejects(theirs.acquire(['k'], 10_000), 'npm redlock with the same keyPrefix is excluded')
    await lock.release()
    const taken = await theirs.acquire(['k'], 10_000)
    await assert.rejects(redlock.acquire(['k'], 10_000), ExecutionError)
    await taken.release()
  })

  test('clients with different keyPrefix options are refused', () => {
    const clients = [...r.clients(t.cluster, { lazyConnect: true })]
    clients[1] = r.clients(t.cluster, { lazyConnect: true, keyPrefix: 'other:' })[1]
    assert.throws(() => new Redlock(clients), { code: 'ERR_INVALID_ARG', message: /different keyPrefix/ })
  })

  test('a Cluster, a Sentinel or Unix-socket client, custom scripts and no client at all are refused', () => {
    const cluster = new Redis.Cluster([{ host: '127.0.0.1', port: t.cluster.nodes[0].port }], { lazyConnect: true })
    try {
      assert.throws(() => new Redlock([cluster]), { code: 'ERR_INVALID_ARG', message: /Cluster.*independent nodes/ })
    } finally {
      cluster.disconnect()
    }
    const sentinel = r.clients(t.cluster, { lazyConnect: true, sentinels: [{ host: '127.0.0.1', port: 1 }], name: 'mymaster' })
    assert.throws(() => new Redlock(sentinel), { code: 'ERR_INVALID_ARG', message: /Sentinel/ })
    const socket = r.clients(t.cluster, { lazyConnect: true, path: '/tmp/redis.sock' })
    assert.throws(() => new Redlock(socket), { code: 'ERR_INVALID_ARG', message: /Unix socket/ })
    assert.throws(() => new Redlock([{ quit: async () => 'OK' }] as never), { code: 'ERR_INVALID_ARG', message: /ioredis Redis client/ })
    const plain = r.clients(t.cluster, { lazyConnect: true })
    const scripts = { acquireScript: (script: string) => script }
    assert.throws(() => new (Redlock as unknown as new (...args: unknown[]) => unknown)(plain, {}, scripts), { code: 'ERR_INVALID_ARG', message: /custom scripts/ })
    assert.throws(() => new Redlock([]), { message: 'Redlock must be instantiated with at least one redis client.' })
  })

  test('a setting of the wrong name, type or range is refused, naming it', async () => {
    const clients = r.clients(t.cluster, { lazyConnect: true })
    assert.throws(() => new Redlock(clients, { retryDelayMs: 10 } as never), { code: 'ERR_INVALID_ARG', message: /'retryDelayMs'.*'retryDelay'/ })
    assert.throws(() => new Redlock(clients, { retryCount: -2 }), { code: 'ERR_INVALID_ARG', message: /'retryCount'/ })
    assert.throws(() => new Redlock(clients, { retryJitter: '5' as never }), { code: 'ERR_INVALID_ARG', message: /'retryJitter'.*string/ })
    assert.throws(() => new Redlock(clients, { driftFactor: 0.9 }), { code: 'ERR_INVALID_ARG', message: /'driftFactor'/ })
    assert.throws(() => new Redlock(clients, { restartQuarantine: 'no' as never }), { code: 'ERR_INVALID_ARG' })
    assert.throws(() => new Redlock(clients, { maxTtlMs: -5 }), { code: 'ERR_INVALID_ARG', message: /'maxTtlMs'/ })
    const { redlock } = r.make(t.cluster, { retryCount: undefined })
    assert.equal(redlock.settings.retryCount, 10, 'undefined counts as not given, as in redlock')
    await assert.rejects(redlock.acquire(['bad'], 1_000, { retryDelay: -1 }), { code: 'ERR_INVALID_ARG', message: /acquire\(\).*'retryDelay'/ })
    await assert.rejects(redlock.acquire(['bad'], 1_000, { restartQuarantine: false } as never), { code: 'ERR_INVALID_ARG', message: /'restartQuarantine'/ })
  })

  test('quit() releases the locks still held and quits the clients', async () => {
    const clients = r.clients(t.cluster)
    const redlock = new Redlock(clients)
    const lock = await redlock.acquire(['held'], 30_000)
    await t.cluster.settled('held', [lock.value, lock.value, lock.value])
    await redlock.quit()
    assert.deepEqual(await t.cluster.values('held'), [null, null, null])
    await waitFor('the clients to close', () => clients.every((client) => client.status === 'end'))
    await assert.rejects(redlock.acquire(['held'], 1_000), { code: 'ERR_LOCK_CLOSED' })
  })
})

describe('redlock: host, port, username, password, db and TLS read from the clients', () => {
  let dir: string
  let cluster: Cluster
  let ca: string
  const r = useRedlocks()

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rql-redlock-tls-'))
    const tls = makeCertificates(dir)
    ca = tls.ca
    // The lock's own connections check the server certificate against SSL_CERT_FILE.
    process.env.SSL_CERT_FILE = tls.ca
    cluster = await Cluster.start(3, {
      tls,
      args: ['--user', 'default', 'off', '--user', 'locker', 'on', `>${PASSWORD}`, '~*', '&*', '+@all'],
    })
  })
  after(async () => {
    await cluster.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const options = (password: string) => ({
    host: 'localhost',
    username: 'locker',
    password,
    db: 3,
    tls: { ca: readFileSync(ca) },
    lazyConnect: true,
    retryStrategy: () => null,
  })

  test('locks in the clients\' db over TLS as their ACL user', async () => {
    const { redlock, clients } = r.make(cluster.nodes.map((node) => node.port), {}, options(PASSWORD))
    const lock = await redlock.acquire(['secure'], 10_000)
    for (const client of clients) {
      assert.equal(await client.get('secure'), lock.value, 'in db 3, read by the client itself')
      assert.equal(await client.pttl('secure') > 9_000, true)
      await client.select(0)
      assert.equal(await client.get('secure'), null, 'not in db 0')
    }
    await lock.release()
  })

  test('a wrong password fails every vote, and appears in no message', async () => {
    const wrong = 'wrong-Pa55word-x'
    const { redlock } = r.make(cluster.nodes.map((node) => node.port), { retryCount: 1, retryDelay: 10 }, options(wrong))
    const error = await redlock.acquire(['secure'], 10_000).then(() => assert.fail('acquired'), (e: unknown) => e)
    assert.ok(error instanceof ExecutionError)
    const votes = (await Promise.all(error.attempts)).flatMap((stats) => [...stats.votesAgainst.values()])
    assert.ok(votes.length >= 4)
    assert.ok(votes.every((vote) => /WRONGPASS|auth/i.test(vote.message)), votes.map((vote) => vote.message).join('; '))
    const text = JSON.stringify(votes.map((vote) => [vote.message, vote.stack])) + (await describeFailure(error))
    assert.doesNotMatch(text, new RegExp(wrong))
    assert.doesNotMatch(text, new RegExp(PASSWORD))
  })
})

describe('redlock: code written for npm redlock runs with only its import changed (__tests__/redlock/usage.ts)', () => {
  const t = useCluster(3, { flush: 'each' })
  const r = useRedlocks()

  test('its configuration, using, acquire/extend/release, availability check and failure report', async () => {
    const clients = r.clients(t.cluster)
    const [a, b, c] = clients
    const redlock = configure(a, b, c)
    try {
      const balances = new Map([['alice', 100], ['bob', 0]])
      assert.equal(await transfer(redlock, 'alice', 'bob', 30, balances), 70)
      assert.deepEqual([...balances], [['alice', 70], ['bob', 30]])
      await assert.rejects(transfer(redlock, 'bob', 'alice', 500, balances), { message: 'Insufficient balance.' })

      const seen: (string | null)[] = []
      const value = await work(redlock, async () => {
        await waitFor('every node to hold the lock', async () => {
          const values = await t.cluster.values('a')
          return values[0] !== null && values.every((held) => held === values[0])
        })
        seen.push((await t.cluster.values('a'))[0])
      })
      assert.deepEqual(seen, [value, value], 'held while working, before and after the extension')
      await t.cluster.settled('a', [null, null, null])

      assert.equal(await isLocked(redlock, 'free'), false)
      const held = await redlock.acquire(['busy'], 10_000)
      assert.equal(await isLocked(redlock, 'busy'), true)
      assert.deepEqual(await grantedBy(held, clients), [0, 1, 2])
      const report = await describeFailure(await redlock.acquire(['busy'], 10_000, { retryCount: 1, retryDelay: 10 }).catch((e: unknown) => e))
      assert.match(report, /ATTEMPT 1: .*votesAgainstSize: 3/s)
      await held.release()
    } finally {
      await redlock.quit()
    }
  })
})

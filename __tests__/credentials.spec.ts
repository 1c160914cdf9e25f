// Credentials providers: the lock's and a node's own, asked once for the
// connections that open together; a provider that throws, rejects, hangs,
// returns garbage or a wrong password costs each node its vote with a coded
// error that names the node and shows no secret, and is asked again after
// the reconnection backoff; health() and the health check use a provider.
// Real ACL users on real nodes stand in for the principals of a token
// service.

import assert from 'node:assert/strict'
import { spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'

import type { CredentialsProvider, LockError, RedisNodeOptions } from '..'
import { useCluster, type ClusterFixture } from './helpers/fixture'
import { waitFor } from './helpers/redis'

const ROOT = path.resolve(__dirname, '..')
/** A token as a token service hands them out: base64, with '/', '+' and '='. */
const SECRET = 'Zk9xQ2/Lm+Tq7WsYtUbVc3Nd8Ke5Rf1Hg6Jh0Pi4Ao='
const OTHER_SECRET = 'Qm9yZW9zLzIwMjYrdG9rZW4rYnJhdm8+Y2hhcmxpZQ=='

/** The first run of four characters of `secret` found in `text`, if any. */
function leaked(text: string, secret: string): string | undefined {
  for (let i = 0; i + 4 <= secret.length; i++) {
    const piece = secret.slice(i, i + 4)
    if (text.includes(piece)) return piece
  }
  return undefined
}

function assertNoSecret(text: string, what: string): void {
  for (const secret of [SECRET, OTHER_SECRET]) {
    const piece = leaked(text, secret)
    assert.equal(piece, undefined, `${what} shows '${piece}' of a secret: ${text}`)
  }
}

/** ACL user `name` with `password` on every node, allowed the lock's keys and channels. */
async function createUser(t: ClusterFixture, name: string, password: string): Promise<void> {
  for (const node of t.cluster.nodes) {
    await node.redis().call('ACL', 'SETUSER', name, 'reset', 'on', `>${password}`, '~redlock:*', '&redlock:*', '+@all')
  }
}

/** Waits until the nodes' connections (but the spec's own) run as `expected`, node by node. */
async function waitForUsers(t: ClusterFixture, expected: string[][]): Promise<void> {
  let seen: string[][] = []
  await waitFor(`connections as ${JSON.stringify(expected)}`, async () => {
    seen = await t.cluster.clientUsers()
    return JSON.stringify(seen) === JSON.stringify(expected)
  }).catch(() => assert.fail(`the nodes' connections run as ${JSON.stringify(seen)}, expected ${JSON.stringify(expected)}`))
}

/** The rejection of `call`, which must reject. */
async function rejection(call: Promise<unknown>): Promise<LockError> {
  try {
    await call
  } catch (error) {
    return error as LockError
  }
  assert.fail('it resolved')
}

describe('credentials providers', () => {
  const t = useCluster(3)
  const nodes = (): RedisNodeOptions[] => t.cluster.nodes.map((node) => ({ host: '127.0.0.1', port: node.port }))

  before(async () => {
    await createUser(t, 'rotor-a', SECRET)
    await createUser(t, 'rotor-b', OTHER_SECRET)
  })

  test("the lock's provider is asked once for the connections that open together, and they run as its user", async () => {
    let calls = 0
    const lock = t.newLock({
      retry_count: 0,
      credentials: () => {
        calls += 1
        return { username: 'rotor-a', password: SECRET }
      },
    })
    const handle = await lock.acquire('creds-one', 10_000)
    assert.ok(handle, 'acquired as rotor-a')
    assert.equal(calls, 1, 'one call served the three connections')
    await waitForUsers(t, [['rotor-a'], ['rotor-a'], ['rotor-a']])
    assert.equal(await lock.release(handle), true)
    await lock.close()
    await waitForUsers(t, [[], [], []])
  })

  test("a node's own provider takes the place of the lock's; one may be async, and one may leave the user name to the node", async () => {
    const [first, second, third] = nodes()
    const lock = t.newLock({
      redis_nodes: [
        { ...first, credentials: async () => ({ username: 'rotor-b', password: OTHER_SECRET }) },
        second,
        { ...third, username: 'rotor-b', credentials: () => Promise.resolve({ password: OTHER_SECRET }) },
      ],
      retry_count: 0,
      credentials: () => ({ username: 'rotor-a', password: SECRET }),
    })
    const handle = await lock.acquire('creds-own', 10_000)
    assert.ok(handle)
    await waitForUsers(t, [['rotor-b'], ['rotor-a'], ['rotor-b']])
    assert.equal(await lock.release(handle), true)
    await lock.close()
    await waitForUsers(t, [[], [], []])
  })

  const failures: [string, CredentialsProvider, RegExp][] = [
    ['throws', () => { throw new Error('the vault is sealed') }, /^credentials provider failed: the vault is sealed$/],
    ['rejects', () => Promise.reject(new Error('identity endpoint: 503')), /^credentials provider failed: identity endpoint: 503$/],
    ['throws a string (a secret, maybe)', () => { throw SECRET }, /^credentials provider failed: it threw a string, not an Error$/],
    ['returns a string', () => SECRET as never, /^credentials provider failed: it returned a string, not \{ username\?, password, expiresAt\? \}$/],
    ['returns an access token as it is', () => ({ token: SECRET, expiresOnTimestamp: Date.now() + 3_600_000 }) as never, /an access token is the password/],
    ['returns a number for a password', () => ({ username: 'rotor-a', password: 4242 }) as never, /^credentials provider failed: 'password' must be a non-empty string, got a number$/],
    ['returns nothing', () => undefined as never, /^credentials provider failed: it returned undefined/],
    ['returns an expiry in seconds', () => ({ password: SECRET, expiresAt: Math.floor(Date.now() / 1000) }), /'expiresAt' is epoch milliseconds .* seconds\?/],
    [
      'returns a wrong password',
      () => ({ username: 'rotor-a', password: OTHER_SECRET }),
      /^authentication with the credentials provider's user and password failed: "WRONGPASS": invalid username-password pair/,
    ],
  ]
  for (const [what, credentials, message] of failures) {
    test(`a provider that ${what} costs every node its vote, named, with the reason and no secret`, async () => {
      const lock = t.newLock({ retry_count: 0, credentials })
      const error = await rejection(lock.acquire('creds-bad', 10_000))
      assert.equal(error.code, 'ERR_QUORUM_UNAVAILABLE', error.message)
      // Decided once a majority failed: the last node may not have answered by then.
      const named = error.nodeErrors?.map((entry) => entry.node) ?? []
      assert.ok(named.length >= 2 && named.every((node) => t.cluster.addresses.includes(node)), error.message)
      for (const entry of error.nodeErrors ?? []) assert.match(entry.message, message)
      assertNoSecret(error.message, 'the error')
      const health = await lock.health()
      assert.equal(health.quorumReachable, false)
      for (const node of health.nodes) {
        assert.equal(node.answers, false)
        assert.match(String(node.error), message)
      }
      assertNoSecret(JSON.stringify(health), 'health()')
    })
  }

  test('a provider that never settles costs the node its vote within connect_timeout_ms', async () => {
    let calls = 0
    const lock = t.newLock({
      retry_count: 0,
      connect_timeout_ms: 300,
      credentials: () => {
        calls += 1
        return new Promise<never>(() => {})
      },
    })
    const started = Date.now()
    const error = await rejection(lock.acquire('creds-hang', 10_000))
    const took = Date.now() - started
    assert.equal(error.code, 'ERR_QUORUM_UNAVAILABLE', error.message)
    for (const entry of error.nodeErrors ?? []) {
      assert.equal(entry.message, 'credentials provider failed: no answer within 300 ms (connect_timeout_ms)')
    }
    assert.ok(took < 300 + 500 + 1_000, `rejected after ${took} ms: the connect timeout, then the command timeout at most`)
    assert.equal(calls, 1, 'one call for the three connections')
  })

  test('the error of a provider that fails after handing out a password does not show that password', async () => {
    let revoked = false
    const lock = t.newLock({
      retry_count: 0,
      credentials: () => {
        if (revoked) throw new Error(`token ${SECRET} was revoked`)
        return { username: 'rotor-a', password: SECRET }
      },
    })
    const handle = await lock.acquire('creds-revoked', 10_000)
    assert.ok(handle)
    revoked = true
    for (const node of t.cluster.nodes) await node.redis().call('CLIENT', 'KILL', 'USER', 'rotor-a')
    // The next command to each node opens a new connection, which asks the provider.
    let last: LockError | null = null
    await waitFor('the provider to be asked again', async () => {
      last = await rejection(lock.acquire('creds-revoked-2', 10_000))
      return (last.nodeErrors ?? []).every((entry) => entry.message.startsWith('credentials provider failed'))
    })
    const error = last as unknown as LockError
    for (const entry of error.nodeErrors ?? []) {
      assert.match(entry.message, /^credentials provider failed: token <redacted> was revoked( \(reconnecting in \d+ ms\))?$/)
    }
    assertNoSecret(error.message, 'the error')
    assertNoSecret(JSON.stringify(await lock.health()), 'health()')
  })

  test('a failed provider is asked again after the reconnection backoff, and the nodes vote again once it answers', async () => {
    let calls = 0
    let failing = true
    const lock = t.newLock({
      retry_count: 0,
      credentials: () => {
        calls += 1
        if (failing) throw new Error('not yet')
        return { username: 'rotor-a', password: SECRET }
      },
    })
    const error = await rejection(lock.acquire('creds-later', 10_000))
    assert.equal(error.code, 'ERR_QUORUM_UNAVAILABLE')
    assert.equal(calls, 1)
    failing = false
    let handle = null
    await waitFor('an acquire to succeed', async () => {
      handle = await lock.acquire('creds-later', 10_000).catch(() => null)
      return handle !== null
    })
    assert.ok(calls >= 2, `asked ${calls} times`)
    assert.equal((await lock.health()).quorumReachable, true)
  })

  test('health() asks the provider for the connections it opens', async () => {
    let calls = 0
    const lock = t.newLock({
      credentials: () => {
        calls += 1
        return { username: 'rotor-a', password: SECRET }
      },
    })
    const health = await lock.health()
    assert.equal(health.quorumReachable, true, JSON.stringify(health))
    assert.ok(health.nodes.every((node) => node.answers && node.error === null && node.lastError === null), JSON.stringify(health.nodes))
    assert.equal(calls, 1)
    await waitForUsers(t, [['rotor-a'], ['rotor-a'], ['rotor-a']])
  })

  describe('the health check (npm run redis:health -- --credentials)', () => {
    let dir = ''
    before(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'rql-creds-'))
    })
    after(() => rmSync(dir, { recursive: true, force: true }))

    /** The health check run as a user runs it, with a provider module whose body is `source`. */
    function check(source: string, args: string[] = []): SpawnSyncReturns<string> {
      const module = path.join(dir, `provider-${Math.random().toString(36).slice(2)}.cjs`)
      writeFileSync(module, source)
      const { NODE_TEST_CONTEXT: _, ...env } = process.env
      return spawnSync(
        process.execPath,
        ['--import', 'tsx', path.join(ROOT, 'infra/check-redis-cluster.ts'), '--credentials', module, '--timeout-ms', '1000', ...args],
        { cwd: ROOT, env: { ...env, REDIS_NODES: t.cluster.addresses.join(','), ROTOR_PASSWORD: SECRET }, encoding: 'utf8', timeout: 60_000 },
      )
    }

    test('connects with what the provider returns', () => {
      const run = check("module.exports = async () => ({ username: 'rotor-a', password: process.env.ROTOR_PASSWORD })", ['--json'])
      assert.equal(run.status, 0, run.stdout + run.stderr)
      const report = JSON.parse(run.stdout) as { verdict: string; nodes: { up: boolean }[] }
      assert.equal(report.verdict, 'healthy')
      assert.ok(report.nodes.every((node) => node.up))
      assertNoSecret(run.stdout + run.stderr, 'the health check')
    })

    test("a wrong password or a provider's failure is each node's error, without the secret", () => {
      const wrong = check(`module.exports = () => ({ username: 'rotor-a', password: '${OTHER_SECRET}' })`)
      assert.equal(wrong.status, 2, wrong.stdout + wrong.stderr)
      assert.equal(wrong.stdout.match(/down: authentication with the credentials provider's user and password failed: "WRONGPASS"/g)?.length, 3, wrong.stdout)
      assertNoSecret(wrong.stdout + wrong.stderr, 'the health check')
      const failing = check("module.exports = () => { throw new Error('the vault is sealed') }")
      assert.equal(failing.status, 2, failing.stdout + failing.stderr)
      assert.equal(failing.stdout.match(/down: credentials provider failed: the vault is sealed/g)?.length, 3, failing.stdout)
      const missing = check('module.exports = 42')
      assert.notEqual(missing.status, 0)
      assert.match(missing.stderr, /the module's default export must be a credentials provider/)
    })
  })
})

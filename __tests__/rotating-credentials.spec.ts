// Tokens that rotate every second or two while locks are held, extended by
// the watchdog and waited for, as Microsoft Entra ID's do every hour: a
// token service stands in for Entra ID (real ACL users and passwords on
// every node, each token revoked at its expiry: its password removed and the
// connections of its user killed with CLIENT KILL USER), and a fake
// TokenCredential for @azure/identity.
//
// With a user per token, a connection that was not authenticated again in
// place before its token expired is killed: none may be. With one user
// whose password rotates (Entra ID's object id), every connection is killed
// at each revocation, and the lock must carry on over new connections with
// the newest token. Either way no lease is lost, no acquire fails, and a
// waiter is still woken by the release.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, test, type TestContext } from 'node:test'

import type { DistributedLock, LockHandle } from '..'
import { entraId, type AccessToken, type TokenCredential } from '../azure'
import { useCluster, type ClusterFixture } from './helpers/fixture'
import { waitFor } from './helpers/redis'

const SCOPE = 'https://redis.azure.com/.default'
const OBJECT_ID = '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b'
const RIGHTS = ['~redlock:*', '&redlock:*', '+@all']

interface Token {
  id: number
  user: string
  password: string
  expiresAt: number
}

/**
 * Stands in for Entra ID on the cluster's nodes: mints a token every
 * `periodMs`, valid for `lifetimeMs`, and revokes each at its expiry. A
 * token is handed out only once every node accepts it.
 */
class TokenService {
  private readonly tokens: Token[] = []
  private readonly timers = new Set<NodeJS.Timeout>()
  /** The ACL changes in the order they were decided, one at a time. */
  private work: Promise<void> = Promise.resolve()
  private failure: unknown = null
  private stopped = false
  /** The connections each revocation killed, per node. */
  readonly killed: number[][] = []
  readonly revoked: number[] = []

  constructor(
    private readonly t: ClusterFixture,
    private readonly userOf: (id: number) => string,
    private readonly periodMs: number,
    private readonly lifetimeMs: number,
  ) {}

  async start(): Promise<void> {
    await this.mint()
    const tick = (): void => {
      this.later(this.periodMs, () => {
        tick()
        return this.mint()
      })
    }
    tick()
  }

  /** The newest token. */
  current(): Token {
    if (this.failure !== null) throw new Error('the token service failed', { cause: this.failure })
    const token = this.tokens.at(-1)
    assert.ok(token, 'the token service runs')
    return token
  }

  /** Stops minting and revoking; resolves once the last change is done. */
  async stop(): Promise<void> {
    this.stopped = true
    for (const timer of this.timers) clearTimeout(timer)
    await this.work
    if (this.failure !== null) throw this.failure
  }

  private async mint(): Promise<void> {
    const id = this.tokens.length + 1
    const token = { id, user: this.userOf(id), password: randomBytes(32).toString('base64'), expiresAt: Date.now() + this.lifetimeMs }
    for (const node of this.t.cluster.nodes) await node.redis().call('ACL', 'SETUSER', token.user, 'on', `>${token.password}`, ...RIGHTS)
    this.tokens.push(token)
    this.later(token.expiresAt - Date.now(), () => this.revoke(token))
  }

  private async revoke(token: Token): Promise<void> {
    const killed = await Promise.all(this.t.cluster.nodes.map(async (node) => {
      await node.redis().call('ACL', 'SETUSER', token.user, `<${token.password}`)
      return Number(await node.redis().call('CLIENT', 'KILL', 'USER', token.user))
    }))
    this.killed.push(killed)
    this.revoked.push(token.id)
  }

  private later(ms: number, change: () => Promise<void>): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      if (this.stopped) return
      this.work = this.work.then(change).catch((error) => {
        this.failure ??= error
      })
    }, Math.max(0, ms))
    this.timers.add(timer)
  }
}

/** `@azure/identity`'s part: the newest token of the service, for any scope asked. */
class FakeTokenCredential implements TokenCredential {
  readonly scopes: (string | string[])[] = []

  constructor(private readonly service: TokenService) {}

  async getToken(scopes: string | string[]): Promise<AccessToken> {
    this.scopes.push(scopes)
    const token = this.service.current()
    return { token: token.password, expiresOnTimestamp: token.expiresAt }
  }
}

/** Per node, how many connections subscribe to `channel`. */
function subscribers(t: ClusterFixture, channel: string): Promise<number[]> {
  return Promise.all(t.cluster.nodes.map(async (node) => Number(((await node.redis().call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1])))
}

/** Acquires and releases short locks of `holder` one after the other until `done()`, counting what failed. */
async function work(holder: DistributedLock, done: () => boolean): Promise<{ acquired: number; failed: string[] }> {
  const failed: string[] = []
  let acquired = 0
  for (let i = 0; !done(); i++) {
    try {
      const handle = await holder.acquire(`rotating-work-${i % 8}`, 2_000)
      if (handle === null) {
        failed.push(`acquire ${i} found the lock held`)
      } else {
        acquired += 1
        if (!(await holder.release(handle))) failed.push(`release ${i} found the lock gone`)
      }
    } catch (error) {
      failed.push(`acquire ${i}: ${(error as Error).message}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return { acquired, failed }
}

/** Releases `lease` and returns how long the waiter took to get the lock after it. */
async function handOver(t: ClusterFixture, holder: DistributedLock, lease: LockHandle, waiting: Promise<LockHandle | null>, resource: string): Promise<number> {
  await waitFor('the waiter to be subscribed on every node', async () => (await subscribers(t, `redlock:${resource}`)).every((n) => n === 1), 10_000)
  const released = Date.now()
  assert.equal(await holder.release(lease), true, 'the holder still had the lease at release')
  const next = await waiting
  assert.ok(next, 'the waiter got the lock')
  return Date.now() - released
}

describe('rotating credentials', () => {
  const t = useCluster(3, { flush: 'each' })

  test('a user per token, each revoked at expiry: ten rotations while a watchdog lease is held and waited for, every connection authenticated again in place', async (ctx: TestContext) => {
    // A new token every second, each valid for four: the lock moves on at
    // three quarters of what is left of its token, 750 ms before expiry at
    // the latest.
    const service = new TokenService(t, (id) => `entra-${id}`, 1_000, 4_000)
    await service.start()
    // The tokens each lock was handed: one more with each rotation.
    const seen = { holder: new Set<number>(), waiter: new Set<number>() }
    const rotations = (): number => Math.min(seen.holder.size, seen.waiter.size) - 1
    const provider = (who: keyof typeof seen) => () => {
      const token = service.current()
      seen[who].add(token.id)
      return { username: token.user, password: token.password, expiresAt: token.expiresAt }
    }
    const holder = t.newLock({ credentials: provider('holder') })
    // A retry delay and a lease far longer than a hand-over: only the release can wake the waiter in time.
    const waiter = t.newLock({ credentials: provider('waiter'), retry_delay_ms: 10_000, retry_jitter_ms: 0 })
    const lease = await holder.acquire('rotating', 5_000, { auto_extend: true })
    assert.ok(lease, 'acquired')
    const firstToken = service.current().id
    const waiting = waiter.acquire('rotating', 5_000, { wait_ms: 120_000 })
    await waitFor('the waiter to subscribe', async () => (await subscribers(t, 'redlock:rotating')).every((n) => n === 1))

    const monitor = await t.cluster.nodes[0].redis().monitor()
    let auths = 0
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (String(args[0]).toUpperCase() === 'AUTH') auths += 1
    })
    let rotating = true
    const working = work(holder, () => !rotating)
    try {
      await waitFor('ten rotations of both locks', () => rotations() >= 10, 90_000)
    } finally {
      rotating = false
    }
    const { acquired, failed } = await working
    const revokedBefore = Math.max(...service.revoked)
    const users = await t.cluster.clientUsers()
    const handover = await handOver(t, holder, lease, waiting, 'rotating')
    monitor.disconnect()
    await service.stop()

    const rotated = rotations()
    const revokedUnderLease = service.revoked.filter((id) => id > firstToken).length
    const killed = service.killed.flat().reduce((sum, n) => sum + n, 0)
    ctx.diagnostic(
      `tokens rotated ${rotated} times while the watchdog held the lease (${revokedUnderLease} tokens issued and revoked meanwhile, ${killed} connections killed); ` +
        `${auths} AUTH commands seen on node 0; ${acquired} short locks taken meanwhile; hand-over after release ${handover} ms`,
    )
    assert.ok(rotated >= 10, `tokens rotated ${rotated} times`)
    assert.ok(revokedUnderLease >= 10, `${revokedUnderLease} tokens revoked under the lease`)
    assert.equal(lease.signal.aborted, false, 'the lease was never lost')
    assert.deepEqual(failed, [], 'no acquire or release failed')
    assert.ok(acquired > 20, `${acquired} short locks`)
    assert.equal(killed, 0, `no connection still ran as a revoked token: ${JSON.stringify(service.killed)}`)
    // The holder's command connection, and the waiter's command and subscription connections.
    assert.ok(auths >= 3 * (rotated - 1), `${auths} AUTH commands on node 0 for ${rotated} rotations of three connections`)
    for (const [i, node] of users.entries()) {
      assert.equal(node.length, 3, `node ${i}: the three connections of the locks, none opened again: ${node}`)
      const tokens = node.map((user) => Number(user.replace('entra-', '')))
      assert.ok(tokens.every((id) => id > revokedBefore), `node ${i} runs as ${node}; tokens up to ${revokedBefore} were revoked`)
    }
    assert.ok(handover < 1_000, `the waiter got the lock ${handover} ms after the release: woken by it, not by the lease's end`)
    for (const lock of [holder, waiter]) {
      const health = await lock.health()
      assert.ok(health.nodes.every((node) => node.answers && node.lastError === null), JSON.stringify(health.nodes))
    }
  })

  test("Entra ID's one user whose password rotates: every connection killed at each revocation, and the lock carries on with the newest token", async (ctx: TestContext) => {
    const service = new TokenService(t, () => OBJECT_ID, 1_000, 2_500)
    await service.start()
    const credential = new FakeTokenCredential(service)
    const credentials = entraId(credential, { objectId: OBJECT_ID })
    const holder = t.newLock({ credentials })
    const waiter = t.newLock({ credentials, retry_delay_ms: 10_000, retry_jitter_ms: 0 })
    const lease = await holder.acquire('rotating-oid', 5_000, { auto_extend: true })
    assert.ok(lease, 'acquired')
    const firstToken = service.current().id
    const waiting = waiter.acquire('rotating-oid', 5_000, { wait_ms: 120_000 })
    await waitFor('the waiter to subscribe', async () => (await subscribers(t, 'redlock:rotating-oid')).every((n) => n === 1))

    let rotating = true
    const working = work(holder, () => !rotating)
    try {
      await waitFor('five tokens used under the lease to be revoked', () => service.revoked.filter((id) => id > firstToken).length >= 5, 60_000)
    } finally {
      rotating = false
    }
    const { acquired, failed } = await working
    const handover = await handOver(t, holder, lease, waiting, 'rotating-oid')
    await service.stop()

    const killed = service.killed.flat().reduce((sum, n) => sum + n, 0)
    ctx.diagnostic(`${service.revoked.length} tokens revoked, ${killed} connections killed; ${acquired} short locks taken meanwhile; hand-over after release ${handover} ms`)
    assert.ok(killed >= service.revoked.length, `the revocations killed the lock's connections: ${JSON.stringify(service.killed)}`)
    assert.equal(lease.signal.aborted, false, 'the lease was never lost')
    assert.deepEqual(failed, [], 'no acquire or release failed')
    assert.ok(acquired > 10, `${acquired} short locks`)
    assert.ok(handover < 1_000, `the waiter got the lock ${handover} ms after the release: woken by it, not by the lease's end`)
    assert.ok(credential.scopes.length > 0 && credential.scopes.every((scope) => scope === SCOPE), JSON.stringify(credential.scopes))
    assert.ok((await t.cluster.clientUsers()).every((node) => node.every((user) => user === OBJECT_ID)), 'every connection runs as the object id')
    for (const lock of [holder, waiter]) {
      const health = await lock.health()
      assert.ok(health.nodes.every((node) => node.answers), JSON.stringify(health.nodes))
      for (const node of health.nodes) assert.doesNotMatch(String(node.lastError), /WRONGPASS|authentication|credentials provider/, JSON.stringify(node))
    }
  })

  test("a release published while the waiter's subscription was down (killed at a revocation) wakes it once the subscription is back", async () => {
    const service = new TokenService(t, () => OBJECT_ID, 60_000, 120_000)
    await service.start()
    const credentials = entraId(new FakeTokenCredential(service), { objectId: OBJECT_ID })
    const holder = t.newLock({ credentials })
    const waiter = t.newLock({ credentials, retry_delay_ms: 10_000, retry_jitter_ms: 0 })
    const lease = await holder.acquire('rotating-gap', 20_000)
    assert.ok(lease)
    const waiting = waiter.acquire('rotating-gap', 5_000, { wait_ms: 60_000 })
    await waitFor('the waiter to subscribe', async () => (await subscribers(t, 'redlock:rotating-gap')).every((n) => n === 1))
    for (const node of t.cluster.nodes) await node.redis().call('CLIENT', 'KILL', 'TYPE', 'pubsub')
    // Published to nobody: the waiter's subscriptions are gone, and back only after their backoff.
    const released = Date.now()
    assert.equal(await holder.release(lease), true)
    assert.deepEqual(await subscribers(t, 'redlock:rotating-gap'), [0, 0, 0], 'released while no subscription was there')
    const next = await waiting
    const handover = Date.now() - released
    await service.stop()
    assert.ok(next, 'the waiter got the lock')
    assert.ok(handover < 3_000, `the waiter got the lock ${handover} ms after the release, not at the end of the 20 s lease it last saw`)
  })
})

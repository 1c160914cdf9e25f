import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import Redis from 'ioredis'

import type { DistributedLock, LockHandle, RedisNodeOptions } from '..'
import { useCluster, type ClusterFixture } from './helpers/fixture'
import { waitFor } from './helpers/redis'

const PASSWORD = 'acl-spec-password'

/** The `ACL SETUSER` line of the README's "Least-privilege ACL" section, the user name and password left out. */
function readmeRules(): string[] {
  const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8')
  const section = readme.split('\n### Least-privilege ACL\n')[1]
  assert.ok(section, 'the README has a "Least-privilege ACL" section')
  const line = section.split('\n').find((text) => text.startsWith('ACL SETUSER '))
  assert.ok(line, 'the section gives an ACL SETUSER line')
  const [, , user, ...rules] = line.trim().split(/\s+/)
  assert.equal(user, 'locker')
  return rules.filter((rule) => !rule.startsWith('>'))
}

/** Makes user `locker` (and nothing else of the default user's rights) on every node, with `rules`. */
async function createUser(t: ClusterFixture, rules: string[]): Promise<void> {
  for (const node of t.cluster.nodes) {
    await node.redis().call('ACL', 'SETUSER', 'locker', 'reset', 'on', `>${PASSWORD}`, ...rules)
    await node.redis().call('ACL', 'LOG', 'RESET')
  }
}

function asLocker(t: ClusterFixture, db = 0): RedisNodeOptions[] {
  return t.cluster.nodes.map((node) => ({ host: '127.0.0.1', port: node.port, username: 'locker', password: PASSWORD, db }))
}

/** What each node refused user `locker`, as `reason:object` ("channel:redlock:a", "command:config|get"). */
async function refusals(t: ClusterFixture): Promise<string[][]> {
  return Promise.all(t.cluster.nodes.map(async (node) => {
    const entries = (await node.redis().call('ACL', 'LOG')) as unknown[][]
    return entries
      .map((entry) => {
        const fields = new Map<string, unknown>()
        for (let i = 0; i < entry.length; i += 2) fields.set(String(entry[i]), entry[i + 1])
        return fields
      })
      .filter((fields) => fields.get('username') === 'locker')
      .map((fields) => `${fields.get('reason')}:${fields.get('object')}`)
  }))
}

/** The commands each node ran since its stats were reset, scripts' commands included, as `INFO commandstats` names them. */
async function commandsRun(t: ClusterFixture): Promise<Set<string>[]> {
  return Promise.all(t.cluster.nodes.map(async (node) => {
    const info = await node.redis().info('commandstats')
    const names = new Set<string>()
    for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) if (Number(match[2]) > 0) names.add(match[1])
    return names
  }))
}

describe('least-privilege ACL: the README user, and nothing more, runs everything', () => {
  const t = useCluster(3)
  const rules = readmeRules()
  // Keys of database 1, where the locks of this suite live (the README user may SELECT).
  const db1: Redis[] = []

  before(async () => {
    await createUser(t, rules)
    for (const node of t.cluster.nodes) db1.push(new Redis({ host: '127.0.0.1', port: node.port, db: 1 }))
  })
  after(() => {
    for (const client of db1) client.disconnect()
  })

  // Read only after the commands of the lock are counted: a GET of the spec's own would count with them.
  const values = (key: string) => Promise.all(db1.map((client) => client.get(key)))
  const subscribers = (channel: string) =>
    Promise.all(t.cluster.nodes.map(async (node) => Number(((await node.redis().call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1])))

  test('the rules are those the README states: the key and channel prefix and a fixed list of commands', () => {
    assert.ok(rules.includes('resetkeys') && rules.includes('resetchannels'), rules.join(' '))
    assert.ok(rules.includes('~redlock:*'), rules.join(' '))
    assert.ok(rules.includes('&redlock:*'), rules.join(' '))
    assert.ok(rules.includes('-@all'), rules.join(' '))
    assert.ok(!rules.some((rule) => rule.startsWith('+@') || rule === 'allkeys' || rule === 'allchannels'), rules.join(' '))
  })

  test('acquire, metadata, fencing, extend, auto_extend, a waiter woken by release, inspect, health and close: no command refused, every command of the list used', async () => {
    for (const node of t.cluster.nodes) await node.redis().config('RESETSTAT')
    const nodes = asLocker(t, 1)
    const lock: DistributedLock = t.newLock({ redis_nodes: nodes, retry_count: 0 })
    // A retry delay far longer than the hand-over: only the release can wake it in time.
    const waiter: DistributedLock = t.newLock({ redis_nodes: nodes, retry_delay_ms: 10_000, retry_jitter_ms: 0 })

    const single = await lock.acquire('acl-one', 30_000)
    assert.ok(single)
    const multi = await lock.acquire(['acl-a', 'acl-b'], 30_000, { metadata: { owner: 'acl-spec' }, fencing: true })
    assert.ok(multi)
    assert.equal(typeof multi.fencingToken, 'bigint')
    const fenced = await lock.acquire('acl-fenced', 30_000, { fencing: true })
    assert.ok(fenced?.fencingToken)
    assert.equal(await lock.extend(single, 40_000), true)

    const info = await lock.inspect('acl-a')
    assert.equal(info.locked, true)
    assert.equal(info.mine, true)
    assert.deepEqual(info.metadata, { owner: 'acl-spec' })
    const health = await lock.health()
    assert.equal(health.quorumReachable, true)
    assert.ok(health.nodes.every((node) => node.answers && node.durable === true && node.error === null), JSON.stringify(health.nodes))

    const waiting = waiter.acquire('acl-one', 30_000, { wait_ms: 20_000 })
    await waitFor('the waiter to subscribe', async () => (await subscribers('redlock:acl-one')).every((n) => n === 1))
    const released = Date.now()
    assert.equal(await lock.release(single), true)
    const next = await waiting
    const handover = Date.now() - released
    assert.ok(next, 'the waiter got the lock')
    assert.ok(handover < 2_000, `hand-over took ${handover} ms: woken by the release, not by the 10 s retry delay`)

    await waitFor('the waiter to unsubscribe', async () => (await subscribers('redlock:acl-one')).every((n) => n === 0))

    const kept = await lock.acquire('acl-auto', 400, { auto_extend: true })
    assert.ok(kept)
    await new Promise((resolve) => setTimeout(resolve, 1_200))
    assert.equal(kept.signal.aborted, false, 'the watchdog kept the 400 ms lease for 1.2 s')
    const auto = await lock.inspect('acl-auto')
    assert.ok(auto.mine && auto.nodes.every((node) => node.held), JSON.stringify(auto.nodes))

    for (const handle of [multi, fenced, kept]) assert.equal(await lock.release(handle as LockHandle), true)
    assert.equal(await waiter.release(next), true)
    await lock.close()
    await waiter.close()

    const listed = rules.filter((rule) => rule.startsWith('+')).map((rule) => rule.slice(1))
    for (const [i, run] of (await commandsRun(t)).entries()) {
      for (const own of ['config|resetstat', 'pubsub|numsub']) run.delete(own)
      // AUTH is open to every user; the list does not name it.
      run.delete('auth')
      assert.deepEqual([...run].sort(), [...listed].sort(), `node ${i}: the commands run are exactly those listed`)
    }
    assert.deepEqual(await refusals(t), [[], [], []], 'no node refused the README user anything')
    for (const key of ['redlock:acl-one', 'redlock:acl-a', 'redlock:acl-b', 'redlock:acl-fenced', 'redlock:acl-auto']) {
      assert.deepEqual(await values(key), [null, null, null], key)
    }
    assert.deepEqual(await values('redlock:fence:acl-fenced'), Array(3).fill(String(fenced.fencingToken)))
  })

  test('without CONFIG GET every lock still works with the quarantine off, and health() says durability is unknown', async () => {
    await createUser(t, rules.filter((rule) => rule !== '+config|get'))
    try {
      const lock = t.newLock({ redis_nodes: asLocker(t, 1), retry_count: 0, restart_quarantine: false })
      const health = await lock.health()
      assert.ok(health.nodes.every((node) => node.answers && node.durable === null), JSON.stringify(health.nodes))
      const handle = await lock.acquire('acl-no-config', 5_000, { fencing: true })
      assert.ok(handle)
      assert.equal(await lock.release(handle), true)
      const quarantined = t.newLock({ redis_nodes: asLocker(t, 1), retry_count: 0, max_ttl_ms: 600_000 })
      const report = await quarantined.health()
      assert.ok(report.nodes.every((node) => node.quarantineMs > 0), 'a node of unknown durability up for less than max_ttl_ms does not count yet')
      assert.equal(report.quorumReachable, false)
    } finally {
      await createUser(t, rules)
    }
  })
})

describe('least-privilege ACL: a user limited to the key prefix, without channel rights', () => {
  const t = useCluster(3, { flush: 'each' })

  before(async () => {
    // The user of the Redis docs' first example: every command on the lock
    // keys, and (Redis 7's acl-pubsub-default) no channel at all.
    await createUser(t, ['~redlock:*', '+@all'])
  })

  test('release resolves true and deletes every key of the lock on every node', async () => {
    const lock = t.newLock({ redis_nodes: asLocker(t), retry_count: 0 })
    const single = await lock.acquire('single', 30_000)
    assert.ok(single)
    assert.equal(await lock.release(single), true)
    await t.cluster.settled('redlock:single', [null, null, null])
    const pair = await lock.acquire(['a', 'b'], 30_000)
    assert.ok(pair)
    await t.cluster.settled('redlock:b', [pair.value, pair.value, pair.value])
    assert.equal(await lock.release(pair), true)
    await t.cluster.settled('redlock:a', [null, null, null])
    await t.cluster.settled('redlock:b', [null, null, null])
    assert.equal(await lock.release(pair), false, 'a second release finds nothing')
    assert.deepEqual((await refusals(t)).map((node) => node.every((refusal) => refusal.startsWith('channel:'))), [true, true, true])
  })

  test('fencing tokens come from counters under the key prefix', async () => {
    const lock = t.newLock({ redis_nodes: asLocker(t), retry_count: 0 })
    const first = await lock.acquire('fenced', 30_000, { fencing: true })
    assert.ok(first?.fencingToken)
    await t.cluster.settled('redlock:fence:fenced', Array(3).fill(String(first.fencingToken)))
    assert.equal(await lock.release(first), true)
    const second = await lock.acquire('fenced', 30_000, { fencing: true })
    assert.ok(second?.fencingToken)
    assert.ok(second.fencingToken > first.fencingToken)
    assert.equal(await lock.release(second), true)
  })

  test('a waiter still gets the lock, once the holder lease runs out, without reconnecting to nodes that refuse SUBSCRIBE', async () => {
    const holder = t.newLock({ redis_nodes: asLocker(t), retry_count: 0 })
    const waiter = t.newLock({ redis_nodes: asLocker(t), retry_delay_ms: 10_000, retry_jitter_ms: 0 })
    const connectionsBefore = await connectionsReceived()
    const pttlsBefore = await t.cluster.calls('pttl')
    const heldAt = Date.now()
    const held = await holder.acquire('handover', 1_500)
    assert.ok(held)
    const waiting = waiter.acquire('handover', 30_000, { wait_ms: 8_000 })
    // Refused before subscribing and right after, the waiter reads the
    // holder's remaining TTL: it sleeps that long unless woken.
    await waitFor('the waiter to read the holder TTL', async () =>
      (await t.cluster.calls('pttl')).every((n, i) => n > pttlsBefore[i]))
    // The release deletes the keys but cannot announce it.
    assert.equal(await holder.release(held), true)
    const next = await waiting
    const waited = Date.now() - heldAt
    assert.ok(next, 'the waiter got the lock')
    assert.ok(waited >= 1_400, `got it after ${waited} ms: at the end of the 1500 ms lease, not at the release`)
    // The holder's connection and the waiter's two (commands, subscription)
    // on each node: a refused SUBSCRIBE keeps its connection.
    const opened = (await connectionsReceived()).map((n, i) => n - connectionsBefore[i])
    assert.deepEqual(opened, [3, 3, 3], `connections opened per node: ${opened}`)
    assert.equal(await waiter.release(next), true)
  })

  const connectionsReceived = () =>
    Promise.all(t.cluster.nodes.map(async (node) => Number(/total_connections_received:(\d+)/.exec(await node.redis().info('stats'))?.[1])))
})

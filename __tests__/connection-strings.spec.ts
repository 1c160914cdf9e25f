// Azure / StackExchange.Redis connection strings as the portal hands them
// out (`host:port,password=...,ssl=True,abortConnect=False`), as one entry of
// redis_nodes and REDIS_INSTANCES, and several of them in REDIS_NODES.

import assert from 'node:assert/strict'
import { after, afterEach, before, describe, test } from 'node:test'

import { resolveNodes, type LockError, type ResolvedNode } from '..'
import { useCluster } from './helpers/fixture'

const KEYS = ['Zk9xQ2/Lm+Tq7WsYtUbVc3Nd8Ke5Rf1Hg6Jh0Pi4Ao=', 'Ab3dE/f+GhIjKlMnOpQrStUvWxYz0123456789abcdE=', 'Qq1/2+3=']
const portal = (host: string, key: string) => `${host}:6380,password=${key},ssl=True,abortConnect=False`
const ENV = ['REDIS_NODES', 'REDIS_INSTANCES'] as const

function fields(node: ResolvedNode) {
  const { host, port, username, password, db, tls } = node
  return { host, port, username, password, db, tls }
}

function one(spec: string): ReturnType<typeof fields> {
  const nodes = resolveNodes({ redis_nodes: [spec] })
  assert.equal(nodes.length, 1)
  return fields(nodes[0])
}

function rejection(spec: string): LockError {
  try {
    resolveNodes({ redis_nodes: [spec] })
  } catch (error) {
    assert.equal((error as LockError).code, 'ERR_INVALID_ARG')
    return error as LockError
  }
  assert.fail(`accepted ${spec}`)
}

describe('connection strings', () => {
  afterEach(() => {
    for (const name of ENV) delete process.env[name]
  })

  test('the portal form is one node with its password, TLS and port', () => {
    assert.deepEqual(one(portal('myrediscache.redis.cache.windows.net', KEYS[0])), {
      host: 'myrediscache.redis.cache.windows.net',
      port: 6380,
      username: undefined,
      password: KEYS[0],
      db: 0,
      tls: true,
    })
  })

  test('keys in any case and order, user=, defaultDatabase=, spaces, and the default ports', () => {
    assert.deepEqual(one(` PASSWORD = ${KEYS[1]} , SSL=true ,cache.example.com, user=app ,defaultDatabase=3, AbortConnect=FALSE,`), {
      host: 'cache.example.com',
      port: 6380,
      username: 'app',
      password: KEYS[1],
      db: 3,
      tls: true,
    })
    assert.deepEqual(one('cache.example.com,ssl=False'), { host: 'cache.example.com', port: 6379, username: undefined, password: undefined, db: 0, tls: false })
    assert.deepEqual(one('[::1]:7000,password='), { host: '::1', port: 7000, username: undefined, password: undefined, db: 0, tls: false })
    assert.equal(one('cache.example.com:10000,ssl=True').port, 10000)
  })

  test('REDIS_NODES: comma-separated connection strings, each starting at its host', () => {
    process.env.REDIS_NODES = ['a.example.com', 'b.example.com', 'c.example.com'].map((host, i) => portal(host, KEYS[i])).join(',')
    const nodes = resolveNodes().map(fields)
    assert.deepEqual(nodes.map((node) => [node.host, node.port, node.password, node.tls]), [
      ['a.example.com', 6380, KEYS[0], true],
      ['b.example.com', 6380, KEYS[1], true],
      ['c.example.com', 6380, KEYS[2], true],
    ])
    process.env.REDIS_NODES = `a:1, b.example.com:6380,password=${KEYS[0]},ssl=True , rediss://:x%2Cy@c:3,[::1]:4`
    assert.deepEqual(resolveNodes().map((node) => [node.label, node.password ?? null, node.tls]), [
      ['a:1', null, false],
      ['b.example.com:6380', KEYS[0], true],
      ['c:3', 'x,y', true],
      ['[::1]:4', null, false],
    ])
  })

  test('REDIS_INSTANCES: connection strings among the objects', () => {
    process.env.REDIS_INSTANCES = JSON.stringify([portal('a.example.com', KEYS[0]), { host: 'b.example.com', port: 6380, password: KEYS[1], ssl: true }])
    assert.deepEqual(resolveNodes().map((node) => [node.label, node.password, node.tls]), [
      ['a.example.com:6380', KEYS[0], true],
      ['b.example.com:6380', KEYS[1], true],
    ])
  })

  test('unknown and unsupported keys are rejected by name, values never echoed', () => {
    for (const [key, says] of [
      ['pasword', /'pasword'.*did you mean 'password'/],
      ['abortconect', /'abortconect'.*did you mean 'abortConnect'/],
      ['sll', /did you mean 'ssl'/],
      ['allowAdmin', /'allowAdmin'.*known keys are password, user, ssl, abortConnect, defaultDatabase/],
      ['connectTimeout', /'connectTimeout'.*connect_timeout_ms/],
      ['syncTimeout', /'syncTimeout'.*command_timeout_ms/],
      ['asyncTimeout', /command_timeout_ms/],
    ] as const) {
      const error = rejection(`cache.example.com:6380,password=${KEYS[2]},${key}=${KEYS[0]}`)
      assert.match(error.message, says)
      assert.match(error.message, /cache\.example\.com:6380/)
      for (const secret of KEYS) assert.ok(!error.message.includes(secret.slice(0, 6)), error.message)
    }
  })

  test('bad values, a second host, and a host missing', () => {
    for (const [spec, says] of [
      ['h:6380,ssl=yes', /'ssl' must be True or False/],
      ['h:6380,abortConnect=0', /'abortConnect' must be True or False/],
      ['h:6380,defaultDatabase=x', /'defaultDatabase' must be/],
      ['h:6380,defaultDatabase=-1', /'defaultDatabase' must be/],
      ['h:6380,password=a,Password=b', /'password' is given twice/],
      ['h:6380,other:6380,password=a', /one node.*own entry/],
      ['password=a,ssl=True', /no host:port/],
      ['h:0,ssl=True', /port/],
      ['h:6380,ssl=True;i:6380,ssl=True', /separate.*','/],
    ] as const) {
      assert.match(rejection(spec).message, says, spec)
    }
    process.env.REDIS_NODES = `password=${KEYS[0]},a:6380`
    assert.throws(() => resolveNodes(), { code: 'ERR_INVALID_ARG', message: /REDIS_NODES: entry 0.*starts with its host:port/ })
  })
})

describe('connection strings against real nodes, each with its own key', () => {
  const t = useCluster(3)

  before(async () => {
    // The helper's own clients stay authenticated: requirepass spares open connections.
    await Promise.all(t.cluster.nodes.map((node, i) => node.redis().config('SET', 'requirepass', KEYS[i])))
  })
  after(() => {
    delete process.env.REDIS_NODES
  })

  test('three portal strings in REDIS_NODES lock and release', async () => {
    process.env.REDIS_NODES = t.cluster.nodes
      .map((node, i) => `127.0.0.1:${node.port},password=${KEYS[i]},ssl=False,abortConnect=False`)
      .join(',')
    // No redis_nodes: the nodes come from REDIS_NODES.
    const lock = t.newLock({ redis_nodes: undefined, retry_count: 0 })
    const handle = await lock.acquire('portal', 5_000)
    assert.ok(handle)
    assert.equal((await lock.health()).counted, 3)
    assert.equal(await handle.release(), true)
  })
})

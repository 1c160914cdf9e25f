// Passwords stay out of every message, label and report. A node string the
// parser cannot read is described by the shape it expected (and its host,
// where one stands where a host belongs), never echoed; passwords with the
// characters URLs reserve work once percent-encoded.

import assert from 'node:assert/strict'
import { afterEach, before, describe, test } from 'node:test'

import { DistributedLock, resolveNodes, type LockError } from '..'
import { thrown } from './helpers/errors'
import { useCluster } from './helpers/fixture'

/** A key as the Azure portal hands them out: base64, with '/', '+' and '='. */
const KEY = 'Zk9xQ2/Lm+Tq7WsYtUbVc3Nd8Ke5Rf1Hg6Jh0Pi4Ao='
/** Every character a URL reserves in a password, and '%'. */
const NASTY = 'p/a+s=s#w?o@r:d%x'
const HOST = 'cache.example.com'
const ENV = ['REDIS_NODES', 'REDIS_INSTANCES'] as const

/** The first run of four characters of `secret` found in `text`, if any. */
function leaked(text: string, secret: string): string | undefined {
  const width = Math.min(4, secret.length)
  for (let i = 0; i + width <= secret.length; i++) {
    const piece = secret.slice(i, i + width)
    if (text.includes(piece)) return piece
  }
  return undefined
}

function assertNoSecret(text: string, secret: string, what: string): void {
  const piece = leaked(text, secret)
  assert.equal(piece, undefined, `${what} shows '${piece}' of the secret: ${text}`)
}

/** Every way a node list reaches the parser: the option, and both environment variables. */
const WAYS: { name: string; feed: (node: unknown) => () => unknown }[] = [
  { name: 'redis_nodes', feed: (node) => () => new DistributedLock({ redis_nodes: [node as string] }) },
  {
    name: 'REDIS_NODES',
    feed: (node) => () => {
      process.env.REDIS_NODES = node as string
      return new DistributedLock({})
    },
  },
  {
    name: 'REDIS_INSTANCES',
    feed: (node) => () => {
      process.env.REDIS_INSTANCES = JSON.stringify([node])
      return new DistributedLock({})
    },
  },
  {
    name: 'resolveNodes',
    feed: (node) => () => resolveNodes({ redis_nodes: [node as string] }),
  },
]

/** [node string, the secret in it, what the message must say instead]. */
const UNREADABLE: [string, string, RegExp][] = [
  [`user:${KEY}@${HOST}:6380`, KEY, new RegExp(`'${HOST}:6380': .*redis://user:password@host`)],
  [`rediss:/:${KEY}@${HOST}:6380`, KEY, /rediss:\/\//],
  [`redis://:${KEY.replaceAll('/', '')}#ab@${HOST}`, `${KEY.replaceAll('/', '')}#ab`, new RegExp(`'${HOST}:6379': .*percent-encoded`)],
  [`redis://:${KEY}@${HOST}:6380`, KEY, new RegExp(`'${HOST}:6380': .*percent-encoded`)],
  [`rediss://:${NASTY}@${HOST}:6380`, NASTY, /percent-encoded/],
  [`redis://:${KEY.replaceAll('/', '')}`, KEY.replaceAll('/', ''), /host/],
  [`redis://u:${KEY.replaceAll('/', '')}@${HOST}:99999`, KEY.replaceAll('/', ''), /port/],
  [`redis://u:${KEY.replaceAll('/', '')}@${HOST}:1/x`, KEY.replaceAll('/', ''), /database/],
  [`redis://u:100%zz${KEY.replaceAll('/', '')}@${HOST}`, `100%zz${KEY.replaceAll('/', '')}`, /%25/],
  [`ftp://u:${KEY}@${HOST}`, KEY, /scheme/],
  [`${HOST}:${KEY.replaceAll('/', '')}`, KEY.replaceAll('/', ''), /port/],
  [KEY, KEY, /host name/],
  [`[${KEY}]:6379`, KEY, /IPv6/],
  [`:${KEY.replaceAll('/', '')}`, KEY.replaceAll('/', ''), /host/],
  [`${HOST}:6380,password=${KEY},ssl=True,sll=True`, KEY, /'sll'.*did you mean 'ssl'/],
  [`${HOST}:6380,password=${KEY},ssl=maybe`, KEY, /ssl.*True or False/],
  [`${HOST}:6380,password=${KEY},password=${KEY}`, KEY, /password.*twice/],
  [`${HOST}:6380,password=${KEY},syncTimeout=100`, KEY, /command_timeout_ms/],
  [`password=${KEY},ssl=True`, KEY, /host/],
  [`rediss://${HOST}:6380,password=${KEY}`, KEY, /host:port/],
  [`${HOST}:6380\n,password=${KEY}\u001b[0m`, KEY, /control character/],
]

describe('node strings the parser cannot read are never echoed', () => {
  afterEach(() => {
    for (const name of ENV) delete process.env[name]
  })

  for (const [spec, secret, says] of UNREADABLE) {
    for (const way of WAYS) {
      test(`${way.name}: ${JSON.stringify(spec).slice(0, 60)}`, () => {
        const error = thrown(way.feed(spec))
        assert.equal(error.code, 'ERR_INVALID_ARG', error.message)
        assertNoSecret(`${error.message}\n${error.stack}`, secret, 'the message')
        // REDIS_NODES splits the list at commas first: its message may speak of another part.
        if (way.name !== 'REDIS_NODES') assert.match(error.message, says)
      })
    }
  }

  test('a bare key after the host, in REDIS_NODES and in an entry', () => {
    for (const way of WAYS) {
      const error = thrown(way.feed(`${HOST}:6380,${KEY}`))
      assert.equal(error.code, 'ERR_INVALID_ARG', `${way.name}: ${error.message}`)
      assertNoSecret(error.message, KEY, way.name)
    }
  })

  test('node objects and values of the wrong type', () => {
    const cases: unknown[] = [
      `${HOST}:6380,password=${KEY}`,
      { host: `${HOST}:6380,password=${KEY}` },
      { host: HOST, port: KEY },
      { host: HOST, port: 6380, db: KEY },
      { host: 'bad host', password: KEY },
      { host: HOST, pasword: KEY },
      { host: HOST, password: [KEY] },
      { host: HOST, username: { KEY } },
      { host: HOST, password: KEY, tls: KEY },
    ]
    for (const node of cases) {
      const asOption = thrown(() => new DistributedLock({ redis_nodes: (typeof node === 'string' ? node : [node]) as never }))
      assert.equal(asOption.code, 'ERR_INVALID_ARG')
      assertNoSecret(asOption.message, KEY, JSON.stringify(node))
      if (typeof node === 'string') continue
      process.env.REDIS_INSTANCES = JSON.stringify([node])
      const asEnv = thrown(() => new DistributedLock({}))
      assert.equal(asEnv.code, 'ERR_INVALID_ARG')
      assertNoSecret(asEnv.message, KEY, `REDIS_INSTANCES ${JSON.stringify(node)}`)
    }
  })

  test('REDIS_INSTANCES that is not a JSON list of nodes', () => {
    for (const text of [
      `[{"host":"${HOST}","password":"${KEY}"`,
      `{"host":"${HOST}","password":"${KEY}"}`,
      `[{"host":"${HOST}","password":"${KEY}",}]`,
      `"${KEY}"`,
      `[{"host":"${HOST}","password":"${KEY}\\x"}]`,
    ]) {
      process.env.REDIS_INSTANCES = text
      const error = thrown(() => new DistributedLock({}))
      assert.equal(error.code, 'ERR_INVALID_ARG')
      assert.match(error.message, /REDIS_INSTANCES/)
      assertNoSecret(error.message, KEY, text)
    }
  })
})

describe('node strings that carry a password are read, and their labels do not show it', () => {
  afterEach(() => {
    for (const name of ENV) delete process.env[name]
  })

  const readable: [string, { host: string; port: number; username?: string; password: string; db: number; tls: boolean }][] = [
    [`${HOST}:6380,password=${KEY},ssl=True,abortConnect=False`, { host: HOST, port: 6380, password: KEY, db: 0, tls: true }],
    [`rediss://:${encodeURIComponent(NASTY)}@${HOST}:6380`, { host: HOST, port: 6380, password: NASTY, db: 0, tls: true }],
    [
      `redis://${encodeURIComponent('us:er@x')}:${encodeURIComponent(KEY)}@${HOST}/2`,
      { host: HOST, port: 6379, username: 'us:er@x', password: KEY, db: 2, tls: false },
    ],
    [`redis://:${KEY.replaceAll('/', '%2F')}@[::1]:7000`, { host: '::1', port: 7000, password: KEY, db: 0, tls: false }],
  ]
  for (const [spec, expected] of readable) {
    test(JSON.stringify(spec).slice(0, 70), () => {
      for (const way of ['redis_nodes', 'REDIS_NODES', 'REDIS_INSTANCES']) {
        if (way === 'REDIS_NODES') process.env.REDIS_NODES = spec
        if (way === 'REDIS_INSTANCES') process.env.REDIS_INSTANCES = JSON.stringify([spec])
        const [node, ...rest] = resolveNodes(way === 'redis_nodes' ? { redis_nodes: [spec] } : {})
        for (const name of ENV) delete process.env[name]
        assert.equal(rest.length, 0, `${way}: one node`)
        const { host, port, username, password, db, tls, label } = node
        assert.deepEqual({ host, port, username, password, db, tls }, { username: undefined, ...expected }, way)
        assert.equal(label, host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`)
        assertNoSecret(label, expected.password, `${way} label`)
      }
    })
  }
})

describe('passwords against real nodes', () => {
  const t = useCluster(3)
  const WRONG = 'Wr0ng/K3y+Is=Here#'
  const ports = () => t.cluster.nodes.map((node) => node.port)

  before(async () => {
    // The helper's own clients stay authenticated: requirepass spares open connections.
    for (const node of t.cluster.nodes) {
      await node.redis().acl('SETUSER', 'locker', 'on', `>${KEY}`, '~*', '&*', '+@all')
      await node.redis().config('SET', 'requirepass', NASTY)
    }
  })

  /** Locks and releases through `redis_nodes`; `form` names them in a failure (their passwords are not shown). */
  async function lockAndRelease(form: string, redis_nodes: string[]): Promise<void> {
    const handle = await t.newLock({ redis_nodes, retry_count: 0 }).acquire('secret-test', 5_000)
    assert.ok(handle, `acquired through ${form}`)
    assert.equal(await handle.release(), true, `released through ${form}`)
  }

  test('percent-encoded URL passwords with / + = # ? @ : % work, for the default user and an ACL user', async () => {
    await lockAndRelease('a URL', ports().map((port) => `redis://:${encodeURIComponent(NASTY)}@127.0.0.1:${port}`))
    await lockAndRelease('a URL with a user', ports().map((port) => `redis://locker:${encodeURIComponent(KEY)}@127.0.0.1:${port}`))
  })

  test('connection strings with password= and user= work', async () => {
    await lockAndRelease('a connection string', ports().map((port) => `127.0.0.1:${port},password=${NASTY},ssl=False,abortConnect=False`))
    await lockAndRelease('a connection string with a user', ports().map((port) => `127.0.0.1:${port},user=locker,password=${KEY},abortConnect=True`))
  })

  test('a password the nodes refuse: nodeErrors and health() name the node, never the password', async () => {
    for (const redis_nodes of [
      ports().map((port) => `127.0.0.1:${port},password=${WRONG},abortConnect=False`),
      ports().map((port) => `redis://locker:${encodeURIComponent(WRONG)}@127.0.0.1:${port}`),
    ]) {
      const lock = t.newLock({ redis_nodes, retry_count: 0 })
      const error = (await lock.acquire('secret-test', 5_000).then(
        () => assert.fail('acquired with a wrong password'),
        (e: unknown) => e,
      )) as LockError
      assert.equal(error.code, 'ERR_QUORUM_UNAVAILABLE', error.message)
      assert.ok((error.nodeErrors?.length ?? 0) >= 2)
      for (const nodeError of error.nodeErrors ?? []) assert.match(nodeError.node, /^127\.0\.0\.1:\d+$/)
      const health = await lock.health()
      assert.equal(health.quorumReachable, false)
      const text = JSON.stringify({ message: error.message, stack: error.stack, nodeErrors: error.nodeErrors, health })
      assert.match(text, /WRONGPASS|auth/i)
      assertNoSecret(text, WRONG, 'the error and health()')
      assertNoSecret(text, KEY, 'the error and health()')
      assertNoSecret(text, NASTY, 'the error and health()')
    }
  })
})

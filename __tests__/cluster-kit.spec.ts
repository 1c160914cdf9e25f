import assert from 'node:assert/strict'
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'

import Redis from 'ioredis'
import { parse } from 'yaml'

import { DistributedLock } from '..'
import { DEFAULT_PORTS } from '../infra/redis-cluster'
import { useCluster } from './helpers/fixture'
import { RedisNode, freePort, ping, waitFor } from './helpers/redis'

const ROOT = path.resolve(__dirname, '..')
const COMPOSE_FILE = path.join(ROOT, 'infra', 'docker', 'docker-compose.redis.yml')

function runTs(script: string, args: string[], env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  // Run the tool as a user would: not as a child of the test runner.
  const { NODE_TEST_CONTEXT: _, ...userEnv } = process.env
  return spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, script), ...args], {
    cwd: ROOT,
    env: { ...userEnv, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  })
}

/** `scripts/check-redis-cluster.sh`, as the users' quick reference runs it, from `cwd`. */
function runHealthScript(args: string[], env: NodeJS.ProcessEnv, cwd = ROOT): SpawnSyncReturns<string> {
  const { NODE_TEST_CONTEXT: _, ...userEnv } = process.env
  return spawnSync(path.join(ROOT, 'scripts', 'check-redis-cluster.sh'), args, {
    cwd,
    env: { ...userEnv, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  })
}

describe('the compose file', () => {
  interface Service {
    image: string
    restart?: string
    ports: string[]
    volumes: string[]
    command: string[]
    healthcheck: { test: string[] }
  }
  const compose = parse(readFileSync(COMPOSE_FILE, 'utf8'), { merge: true }) as {
    services: Record<string, Service>
    volumes: Record<string, unknown>
  }

  test('has three independent Redis 7 nodes on the ports of the local fallback', () => {
    const services = Object.entries(compose.services)
    assert.equal(services.length, 3)
    const ports = services.map(([, s]) => {
      const match = /^\$\{REDIS_PORT_\d:-(\d+)\}:6379$/.exec(s.ports[0])
      assert.ok(match, `port mapping ${s.ports[0]}`)
      return Number(match[1])
    })
    assert.deepEqual(ports, DEFAULT_PORTS)
    for (const [name, service] of services) {
      assert.match(service.image, /^redis:7/, name)
      const command = service.command.join(' ')
      assert.doesNotMatch(command, /replicaof|slaveof/, `${name} replicates`)
      assert.match(command, /--appendonly yes/, name)
      assert.match(command, /--appendfsync always/, name)
      assert.match(command, /requirepass/, `${name} takes an optional password`)
      assert.ok(service.restart, `${name} has a restart policy`)
      assert.match(service.healthcheck.test.join(' '), /redis-cli.*ping/, `${name} has a healthcheck`)
      const volume = service.volumes[0].split(':')[0]
      assert.ok(volume in compose.volumes, `${name} uses the named volume ${volume}`)
    }
  })

  test('passes docker-compose config when docker-compose is installed', (t) => {
    const check = spawnSync('docker-compose', ['-f', COMPOSE_FILE, 'config', '-q'], { encoding: 'utf8' })
    if (check.error) {
      t.skip('docker-compose is not installed')
      return
    }
    assert.equal(check.status, 0, check.stderr)
  })
})

describe('the nodes the cluster tool runs', () => {
  test('are read from REDIS_NODES as the lock reads them: a connection string with its options is one node', async () => {
    const node = await RedisNode.start({ args: ['--requirepass', 'kit-s3cret'] })
    try {
      const run = runTs('infra/redis-cluster.ts', ['status'], { REDIS_NODES: `127.0.0.1:${node.port},password=kit-s3cret,abortConnect=False` })
      assert.equal(run.status, 0, run.stdout + run.stderr)
      assert.equal(run.stdout, `  ${node.port}: answers\n`)
      assert.doesNotMatch(run.stdout + run.stderr, /kit-s3cret/)
    } finally {
      await node.stop()
    }
  })

  test('a node on another machine is refused by its label, never with its password', () => {
    for (const nodes of ['redis://:kit-leak-1@10.1.2.3:6390', '10.1.2.3:6390,password=kit-leak-1,ssl=True']) {
      const run = runTs('infra/redis-cluster.ts', ['status'], { REDIS_NODES: nodes })
      assert.equal(run.status, 1, run.stdout + run.stderr)
      assert.match(run.stderr, /node 10\.1\.2\.3:6390 is not a local address/)
      assert.doesNotMatch(run.stdout + run.stderr, /kit-leak-1/)
    }
  })
})

describe('the local fallback of redis:start and the health check', () => {
  let ports: number[]
  let state: string
  let foreign: RedisNode
  let env: NodeJS.ProcessEnv

  before(async () => {
    // A node this tool did not start, on the third port: it must be left alone.
    // Without AOF on purpose: the health check must tell it apart. The lock
    // still reaches its quorum through the two durable nodes.
    foreign = await RedisNode.start({ durable: false })
    ports = [await freePort(), await freePort(), foreign.port]
    state = mkdtempSync(path.join(os.tmpdir(), 'rql-state-'))
    env = { REDIS_NODES: ports.map((port) => `127.0.0.1:${port}`).join(','), REDIS_STATE_DIR: state }
  })
  after(async () => {
    runTs('infra/redis-cluster.ts', ['stop'], env)
    await foreign.stop()
    rmSync(state, { recursive: true, force: true })
  })

  test('redis:start starts the missing nodes with AOF appendfsync always, and is idempotent', async () => {
    const first = runTs('infra/redis-cluster.ts', ['start'], env)
    assert.equal(first.status, 0, first.stdout + first.stderr)
    assert.match(first.stdout, new RegExp(`${ports[0]}: started`))
    assert.match(first.stdout, new RegExp(`${ports[2]}: already running \\(not started by this tool: left alone\\)`))
    for (const port of ports) assert.ok(await ping(port), `${port} answers`)
    const node = new Redis({ host: '127.0.0.1', port: ports[0] })
    assert.deepEqual(await node.config('GET', 'appendonly'), ['appendonly', 'yes'])
    assert.deepEqual(await node.config('GET', 'appendfsync'), ['appendfsync', 'always'])
    node.disconnect()
    const again = runTs('infra/redis-cluster.ts', ['start'], env)
    assert.equal(again.status, 0)
    assert.match(again.stdout, new RegExp(`${ports[0]}: already running \\(started here before\\)`))
  })

  test('redis:health reports every node, counts lock keys by SCAN, and exits by verdict', async () => {
    const lock = new DistributedLock({ redis_nodes: env.REDIS_NODES!.split(',') })
    // The fenced one adds a counter under the prefix, which is not a lock key.
    const handles = await Promise.all([lock.acquire('health-a', 30_000), lock.acquire('health-b', 30_000, { fencing: true })])
    assert.ok(handles.every(Boolean))
    const clients = ports.map((port) => new Redis({ host: '127.0.0.1', port }))
    await waitFor('every node to hold both locks', async () =>
      (await Promise.all(clients.map((c) => c.exists('redlock:health-a', 'redlock:health-b')))).every((n) => n === 2))
    for (const client of clients) client.disconnect()
    const healthy = runTs('infra/check-redis-cluster.ts', ['--json'], env)
    assert.equal(healthy.status, 0, healthy.stderr)
    const report = JSON.parse(healthy.stdout) as { verdict: string; quorum: number; up: number; nodes: Record<string, unknown>[] }
    assert.equal(report.verdict, 'healthy')
    assert.equal(report.quorum, 2)
    for (const node of report.nodes) {
      assert.equal(node.up, true)
      assert.match(String(node.version), /^\d+\.\d+/)
      assert.equal(node.role, 'master')
      assert.equal(typeof node.pingMs, 'number')
      assert.equal(typeof node.uptimeSeconds, 'number')
      assert.equal(typeof node.usedMemory, 'string')
    }
    assert.equal(report.nodes[0].durable, true, 'the node started by redis:start is durable')
    assert.equal(report.nodes[2].durable, false, 'the foreign test node runs without AOF')
    assert.ok(report.nodes.every((node) => node.lockKeys === 2), JSON.stringify(report.nodes.map((n) => n.lockKeys)))
    const text = runTs('infra/check-redis-cluster.ts', [], env)
    assert.equal(text.status, 0)
    assert.match(text.stdout, /Verdict: healthy: all 3 nodes answer/)
    // The quick reference's command, from the checkout and from elsewhere.
    for (const cwd of [ROOT, os.tmpdir()]) {
      const script = runHealthScript([], env, cwd)
      assert.equal(script.status, 0, script.stdout + script.stderr)
      assert.match(script.stdout, /Verdict: healthy: all 3 nodes answer/)
      assert.match(script.stdout, /2 lock keys \(redlock:\*\)/)
    }
    const scriptJson = runHealthScript(['--json'], env)
    assert.equal(scriptJson.status, 0, scriptJson.stderr)
    assert.equal((JSON.parse(scriptJson.stdout) as { verdict: string }).verdict, 'healthy')
    await lock.close()
  })

  test('one node down is degraded (exit 1), two are down (exit 2)', async () => {
    foreign.pause()
    try {
      const degraded = runTs('infra/check-redis-cluster.ts', ['--timeout-ms', '300'], env)
      assert.equal(degraded.status, 1, degraded.stdout)
      assert.match(degraded.stdout, /Verdict: degraded: 1 of 3 nodes down/)
      assert.match(degraded.stdout, new RegExp(`✗ 127\\.0\\.0\\.1:${foreign.port}.*down`))
      const script = runHealthScript(['--timeout-ms', '300'], env)
      assert.equal(script.status, 1, script.stdout + script.stderr)
      assert.match(script.stdout, /Verdict: degraded: 1 of 3 nodes down/)
      const pid = Number(readFileSync(path.join(state, String(ports[1]), 'redis.pid'), 'utf8'))
      process.kill(pid, 'SIGKILL')
      await waitFor('the node to go', async () => !(await ping(ports[1])))
      const down = runTs('infra/check-redis-cluster.ts', ['--json', '--timeout-ms', '300'], env)
      assert.equal(down.status, 2, down.stdout)
      assert.equal((JSON.parse(down.stdout) as { verdict: string }).verdict, 'down')
      assert.equal(runHealthScript(['--timeout-ms', '300'], env).status, 2)
    } finally {
      foreign.resume()
    }
  })

  test('redis:stop stops only the nodes it started', async () => {
    const stopped = runTs('infra/redis-cluster.ts', ['stop'], env)
    assert.equal(stopped.status, 0, stopped.stderr)
    assert.equal(await ping(ports[0]), false, 'its node stopped')
    assert.equal(await ping(foreign.port), true, 'the foreign node still runs')
    assert.match(stopped.stdout, new RegExp(`${foreign.port}: not started by this tool: left alone`), `stdout: ${stopped.stdout}\nstderr: ${stopped.stderr}`)
  })

  test('redis:start says how to install Redis when neither Docker nor redis-server is there', () => {
    // A PATH with nothing but node on it.
    const bin = mkdtempSync(path.join(os.tmpdir(), 'rql-bin-'))
    symlinkSync(process.execPath, path.join(bin, 'node'))
    try {
      const run = runTs('infra/redis-cluster.ts', ['start'], { ...env, PATH: bin })
      assert.equal(run.status, 1)
      assert.match(run.stderr, /Neither a Docker engine nor redis-server is available/)
      assert.match(run.stderr, /apt-get install -y redis-server/)
    } finally {
      rmSync(bin, { recursive: true, force: true })
    }
  })

  test('the health check never prints a password', async () => {
    const guarded = await RedisNode.start({ args: ['--requirepass', 'health-s3cret'] })
    try {
      const nodes = { REDIS_NODES: `redis://:health-s3cret@127.0.0.1:${guarded.port},127.0.0.1:${ports[0]}` }
      for (const args of [[], ['--json']]) {
        const run = runTs('infra/check-redis-cluster.ts', [...args, '--timeout-ms', '300'], nodes)
        assert.doesNotMatch(run.stdout + run.stderr, /health-s3cret/)
        assert.match(run.stdout, /127\.0\.0\.1/)
      }
      const wrong = runTs('infra/check-redis-cluster.ts', ['--timeout-ms', '300'], { REDIS_NODES: `redis://:wrong-pass-xyz@127.0.0.1:${guarded.port}` })
      assert.equal(wrong.status, 2)
      assert.match(wrong.stdout, /authentication failed/)
      assert.doesNotMatch(wrong.stdout + wrong.stderr, /wrong-pass-xyz/)
    } finally {
      await guarded.stop()
    }
  })
})

describe('the keeper example and test:lock', () => {
  const t = useCluster(3)

  const startKeeper = (instance: string, lock: string) => {
    const env = { ...process.env, REDIS_NODES: t.cluster.addresses.join(',') }
    const child = spawn(process.execPath, [
      '--import', 'tsx', path.join(ROOT, 'examples', 'keeper_with_lock.ts'),
      '--instance', instance, '--region', 'test', '--lock', lock,
      '--ttl-ms', '1500', '--work-ms', '200', '--retry-ms', '100',
    ], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] })
    const out = { text: '' }
    child.stdout.on('data', (data: Buffer) => {
      out.text += data.toString()
    })
    return { child, out }
  }

  test('a keeper takes over when the holder dies, and releases on SIGTERM', async () => {
    const start = (instance: string) => startKeeper(instance, 'takeover')
    const a = start('keeper-a')
    const b = start('keeper-b')
    try {
      await waitFor('one keeper to win', () => /✓ lock acquired/.test(a.out.text + b.out.text), 20_000)
      const [winner, loser] = /✓ lock acquired/.test(a.out.text) ? [a, b] : [b, a]
      await waitFor('the other to lose', () => /✗ lock unavailable/.test(loser.out.text), 20_000)
      assert.doesNotMatch(loser.out.text, /✓ lock acquired/)
      const winnerName = winner === a ? 'keeper-a' : 'keeper-b'
      await waitFor('the loser to name the holder', () => loser.out.text.includes(`✗ lock unavailable | held by ${winnerName} (test)`), 5_000)
      const exited = once(winner.child, 'exit')
      winner.child.kill('SIGKILL')
      await exited
      await waitFor('the loser to take over', () => /✓ lock acquired \| Lease: \w+ \| validity \d+ ms/.test(loser.out.text), 10_000)
      await waitFor('the new holder to work', () => /Working/.test(loser.out.text), 5_000)
      const stopped = once(loser.child, 'exit')
      loser.child.kill('SIGTERM')
      const [code] = await stopped
      assert.equal(code, 0)
      assert.match(loser.out.text, /Lock released/)
      await t.cluster.settled('redlock:takeover', [null, null, null])
    } finally {
      a.child.kill('SIGKILL')
      b.child.kill('SIGKILL')
    }
  })

  test('a keeper stops working when its lease is lost, and competes again', async () => {
    const keeper = startKeeper('keeper-lost', 'lost-lease')
    try {
      await waitFor('the keeper to work', () => /Working/.test(keeper.out.text), 20_000)
      // A majority that answers nothing: the watchdog cannot extend the lease.
      t.cluster.nodes[1].pause()
      t.cluster.nodes[2].pause()
      try {
        await waitFor('the lease to be lost', () => /✗ lease lost: stopped working; competing again/.test(keeper.out.text), 10_000)
      } finally {
        t.cluster.nodes[1].resume()
        t.cluster.nodes[2].resume()
      }
      const afterLoss = () => keeper.out.text.split('✗ lease lost')[1]
      await waitFor('the keeper to hold the lock again', () => afterLoss().includes('✓ lock acquired'), 15_000)
      const untilAcquired = afterLoss().split('✓ lock acquired')[0]
      assert.doesNotMatch(untilAcquired, /Working/, 'it worked on without the lease')
      assert.match(untilAcquired, /Attempting lock/)
      const stopped = once(keeper.child, 'exit')
      keeper.child.kill('SIGTERM')
      assert.deepEqual(await stopped, [0, null])
    } finally {
      keeper.child.kill('SIGKILL')
    }
  })

  test('test:lock passes against a running cluster, one line per check', () => {
    const run = runTs('examples/test_distributed_lock.ts', [], { REDIS_NODES: t.cluster.addresses.join(',') })
    assert.equal(run.status, 0, run.stdout + run.stderr)
    const passes = run.stdout.split('\n').filter((line) => line.startsWith('PASS '))
    assert.deepEqual(passes.map((line) => line.split(':')[0]), [
      'PASS competition',
      'PASS extend',
      'PASS release',
      'PASS takeover after the TTL',
      'PASS quorum with one node down',
    ])
  })

  test('test:lock passes against nodes that ask for a password, and never prints it', async () => {
    const nodes = await Promise.all([1, 2, 3].map(() => RedisNode.start({ args: ['--requirepass', 'lock-check-s3cret'] })))
    try {
      const run = runTs('examples/test_distributed_lock.ts', [], {
        REDIS_NODES: nodes.map((node) => `redis://:lock-check-s3cret@${node.address}`).join(','),
      })
      assert.equal(run.status, 0, run.stdout + run.stderr)
      assert.equal(run.stdout.split('\n').filter((line) => line.startsWith('PASS ')).length, 5, run.stdout)
      assert.doesNotMatch(run.stdout + run.stderr, /lock-check-s3cret/)
    } finally {
      await Promise.all(nodes.map((node) => node.stop()))
    }
  })

  test('test:lock fails, with a FAIL line per check, when the cluster is down', async () => {
    const dead = [await freePort(), await freePort(), await freePort()].map((port) => `127.0.0.1:${port}`)
    const run = runTs('examples/test_distributed_lock.ts', [], { REDIS_NODES: dead.join(',') })
    assert.equal(run.status, 1)
    assert.equal(run.stdout.split('\n').filter((line) => line.startsWith('FAIL ')).length, 5)
  })
})

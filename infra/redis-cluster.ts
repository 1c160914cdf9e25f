// Starts, stops and tails the three-node Redis cluster the lock runs on:
// with Docker Compose when a Docker engine answers, else as local
// redis-server processes with the same ports and the same persistence (AOF,
// appendfsync always), their data, pid and log files under .redis/.
//
// Usage: tsx infra/redis-cluster.ts start|stop|restart|logs|status
// REDIS_NODES or REDIS_INSTANCES (local addresses only, read as the lock
// reads them) moves the nodes off 6379-6381;
// REDIS_PASSWORD sets a password on every node; REDIS_STATE_DIR moves .redis/.

import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'

import { DistributedLock, resolveNodes } from '..'

const ROOT = path.resolve(__dirname, '..')
/** Data, pid and log files of the local nodes; REDIS_STATE_DIR moves them. */
const STATE = process.env.REDIS_STATE_DIR ? path.resolve(process.env.REDIS_STATE_DIR) : path.join(ROOT, '.redis')
const COMPOSE_FILE = path.join(ROOT, 'infra', 'docker', 'docker-compose.redis.yml')
/** The ports of the compose file's three services, in order. */
export const DEFAULT_PORTS = [6379, 6380, 6381]
const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '::1'])

/**
 * The ports to run on: those of the nodes the lock reads (REDIS_NODES, else
 * REDIS_INSTANCES, else 6379-6381), which must all be on this machine.
 */
export function clusterPorts(): number[] {
  return resolveNodes().map((node) => {
    if (!LOCAL_HOSTS.has(node.host)) {
      throw new Error(`node ${node.label} is not a local address; this tool only starts nodes on this machine`)
    }
    return node.port
  })
}

/**
 * Whether a Redis node answers on `port`, as the lock's health() sees it
 * with a fresh connection. A node that asks for a password answers too: this
 * probe has none. A node still loading its data does not.
 */
export async function answers(port: number, timeoutMs = 300): Promise<boolean> {
  const lock = new DistributedLock({
    redis_nodes: [{ host: '127.0.0.1', port }],
    connect_timeout_ms: timeoutMs,
    command_timeout_ms: timeoutMs,
  })
  try {
    const [node] = (await lock.health()).nodes
    return node.answers || /NOAUTH|authentication/i.test(node.error ?? '')
  } finally {
    await lock.close()
  }
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return false
}

function has(command: string, args: string[]): boolean {
  const result = spawnSync(command, args, { stdio: 'ignore', timeout: 5000 })
  return result.status === 0
}

/** `docker compose` when a Docker engine answers, else null. */
function compose(): string[] | null {
  if (!has('docker', ['info'])) return null
  if (has('docker', ['compose', 'version'])) return ['docker', 'compose']
  if (has('docker-compose', ['version'])) return ['docker-compose']
  return null
}

function nodeDir(port: number): string {
  return path.join(STATE, String(port))
}

/**
 * The pid of the node this tool started on `port`, while that process runs.
 * A pid file outlives its process and pids are reused, so on Linux the
 * process must also be a redis-server on that port before it is signalled.
 */
function pidOf(port: number): number | null {
  const file = path.join(nodeDir(port), 'redis.pid')
  if (!existsSync(file)) return null
  const pid = Number(readFileSync(file, 'utf8').trim())
  if (!Number.isInteger(pid) || pid <= 0) return null
  try {
    process.kill(pid, 0)
  } catch {
    return null
  }
  const cmdline = `/proc/${pid}/cmdline`
  if (existsSync('/proc/self/cmdline')) {
    const command = existsSync(cmdline) ? readFileSync(cmdline, 'utf8') : ''
    if (!command.includes('redis-server') || !command.includes(`:${port}`)) return null
  }
  return pid
}

function composeEnv(ports: number[]): NodeJS.ProcessEnv {
  return { ...process.env, REDIS_PORT_1: String(ports[0]), REDIS_PORT_2: String(ports[1]), REDIS_PORT_3: String(ports[2]) }
}

async function start(): Promise<number> {
  const ports = clusterPorts()
  const docker = ports.length === 3 ? compose() : null
  if (docker) {
    console.log(`Docker engine found: starting the cluster with ${docker.join(' ')}`)
    const result = spawnSync(docker[0], [...docker.slice(1), '-f', COMPOSE_FILE, 'up', '-d', '--wait'], { stdio: 'inherit', env: composeEnv(ports) })
    if (result.status === 0) {
      mkdirSync(STATE, { recursive: true })
      writeFileSync(path.join(STATE, 'mode'), 'docker\n')
    }
    return result.status ?? 1
  }
  if (!has('redis-server', ['--version'])) {
    console.error(
      'Neither a Docker engine nor redis-server is available.\n' +
        '  Install Redis:  apt-get install -y redis-server   (Debian/Ubuntu)\n' +
        '                  brew install redis                 (macOS)\n' +
        '  or start Docker and run this again to use infra/docker/docker-compose.redis.yml.',
    )
    return 1
  }
  console.log(`No Docker engine answers: starting local redis-server nodes on ${ports.join(', ')}`)
  mkdirSync(STATE, { recursive: true })
  writeFileSync(path.join(STATE, 'mode'), 'local\n')
  let failed = 0
  for (const port of ports) {
    if (await answers(port)) {
      const ours = pidOf(port) !== null
      console.log(`  ${port}: already running${ours ? ' (started here before)' : ' (not started by this tool: left alone)'}`)
      continue
    }
    const dir = nodeDir(port)
    mkdirSync(dir, { recursive: true })
    const args = [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--appendonly', 'yes', '--appendfsync', 'always', '--save', '',
      '--daemonize', 'yes', '--pidfile', path.join(dir, 'redis.pid'), '--logfile', path.join(dir, 'redis.log'),
    ]
    if (process.env.REDIS_PASSWORD) args.push('--requirepass', process.env.REDIS_PASSWORD)
    const result = spawnSync('redis-server', args, { stdio: 'inherit' })
    const up = result.status === 0 && (await waitUntil(() => answers(port), 5000))
    console.log(`  ${port}: ${up ? `started (AOF appendfsync always, data in ${path.relative(ROOT, dir)})` : `failed to start, see ${path.relative(ROOT, path.join(dir, 'redis.log'))}`}`)
    if (!up) failed++
  }
  return failed === 0 ? 0 : 1
}

async function stop(): Promise<number> {
  const ports = clusterPorts()
  const mode = existsSync(path.join(STATE, 'mode')) ? readFileSync(path.join(STATE, 'mode'), 'utf8').trim() : 'local'
  if (mode === 'docker') {
    const docker = compose()
    if (!docker) {
      console.error('The cluster was started with Docker, but no Docker engine answers now.')
      return 1
    }
    const result = spawnSync(docker[0], [...docker.slice(1), '-f', COMPOSE_FILE, 'down'], { stdio: 'inherit', env: composeEnv(ports) })
    if (result.status === 0) rmSync(path.join(STATE, 'mode'), { force: true })
    return result.status ?? 1
  }
  for (const port of ports) {
    const pid = pidOf(port)
    if (pid === null) {
      console.log(`  ${port}: ${(await answers(port)) ? 'not started by this tool: left alone' : 'not running'}`)
      continue
    }
    process.kill(pid, 'SIGTERM')
    const gone = await waitUntil(async () => pidOf(port) === null || !(await answers(port)), 10_000)
    rmSync(path.join(nodeDir(port), 'redis.pid'), { force: true })
    console.log(`  ${port}: ${gone ? 'stopped' : `did not stop (pid ${pid})`}`)
  }
  return 0
}

function logs(): Promise<number> {
  const ports = clusterPorts()
  const mode = existsSync(path.join(STATE, 'mode')) ? readFileSync(path.join(STATE, 'mode'), 'utf8').trim() : 'local'
  const docker = mode === 'docker' ? compose() : null
  const [command, args] = docker
    ? [docker[0], [...docker.slice(1), '-f', COMPOSE_FILE, 'logs', '-f']]
    : ['tail', ['-n', '20', '-F', ...ports.map((port) => path.join(nodeDir(port), 'redis.log'))]]
  const child = spawn(command, args, { stdio: 'inherit', env: composeEnv(ports) })
  return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 0)))
}

async function status(): Promise<number> {
  let up = 0
  for (const port of clusterPorts()) {
    const ok = await answers(port)
    if (ok) up++
    console.log(`  ${port}: ${ok ? 'answers' : 'does not answer'}${pidOf(port) !== null ? ' (started here)' : ''}`)
  }
  return up === clusterPorts().length ? 0 : 1
}

async function main(): Promise<void> {
  const command = process.argv[2]
  const commands: Record<string, () => Promise<number>> = {
    start,
    stop,
    restart: async () => (await stop()) || start(),
    logs,
    status,
  }
  const run = commands[command ?? '']
  if (!run) {
    console.error(`usage: redis-cluster <${Object.keys(commands).join('|')}>`)
    process.exitCode = 2
    return
  }
  process.exitCode = await run()
}

if (require.main === module) {
  main().catch((error: Error) => {
    console.error(error.message)
    process.exitCode = 1
  })
}

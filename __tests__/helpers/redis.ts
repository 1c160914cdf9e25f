// Real redis-server processes on free ports for the specs: started, paused,
// killed and stopped by the test that owns them, never the user's 6379-6381.

import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, statfsSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import Redis from 'ioredis'

import { answers } from '../../infra/redis-cluster'

const running = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/** A port nothing listens on right now (and never one of the user's 6379-6381). */
export async function freePort(): Promise<number> {
  for (;;) {
    const server = net.createServer()
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as net.AddressInfo
    server.close()
    await once(server, 'close')
    if (port < 6379 || port > 6381) return port
  }
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Whether a node answers PING on `port`. */
export function ping(port: number): Promise<boolean> {
  return answers(port, 500)
}

export interface NodeOptions {
  /**
   * Whether the node keeps every write in an append-only file synced before
   * each reply (the default), so a restart keeps its locks and the lock's
   * restart quarantine leaves it alone. `false` gives a node that forgets
   * everything when killed: the lock keeps its vote out of the quorum for
   * the longest TTL after each start, so tests using one say why.
   */
  durable?: boolean
  /** Extra redis-server arguments, as `['--requirepass', 'x']`. */
  args?: string[]
  /** Start the node with TLS only on this port (the plain port is disabled). */
  tls?: { cert: string; key: string; ca: string }
}

/**
 * Where nodes keep their append-only files: on tmpfs the fsync of every
 * write costs nothing, and the file still outlives the process, which is
 * the crash the specs inflict. A small /dev/shm (containers often have
 * 64 MB) would fill up under the soak, so it needs room to spare.
 */
function dataRoot(): string {
  try {
    const shm = statfsSync('/dev/shm')
    if (shm.bavail * shm.bsize >= 2 ** 30) return '/dev/shm'
  } catch {
    // no /dev/shm
  }
  return os.tmpdir()
}

/** One redis-server process. */
export class RedisNode {
  readonly port: number
  private child: ChildProcess | null = null
  private readonly options: NodeOptions
  private readonly dir: string
  private client: Redis | null = null

  private constructor(port: number, options: NodeOptions) {
    this.port = port
    this.options = options
    this.dir = mkdtempSync(path.join(dataRoot(), 'rql-node-'))
  }

  static async start(options: NodeOptions = {}): Promise<RedisNode> {
    const node = new RedisNode(await freePort(), options)
    await node.start()
    return node
  }

  get address(): string {
    return `127.0.0.1:${this.port}`
  }

  get pid(): number {
    if (!this.child?.pid) throw new Error(`node ${this.port} is not running`)
    return this.child.pid
  }

  async start(): Promise<void> {
    const portArgs = this.options.tls
      ? ['--port', '0', '--tls-port', String(this.port), '--tls-cert-file', this.options.tls.cert,
         '--tls-key-file', this.options.tls.key, '--tls-ca-cert-file', this.options.tls.ca, '--tls-auth-clients', 'no']
      : ['--port', String(this.port)]
    const child = spawn('redis-server', [
      ...portArgs,
      '--bind', '127.0.0.1',
      '--dir', this.dir,
      '--save', '',
      ...(this.options.durable === false
        ? ['--appendonly', 'no']
        : ['--appendonly', 'yes', '--appendfsync', 'always']),
      ...(this.options.args ?? []),
    ], { stdio: 'ignore' })
    running.add(child)
    child.on('exit', () => running.delete(child))
    this.child = child
    if (this.options.tls) {
      await waitFor(`TLS node ${this.port} to listen`, () => portOpen(this.port))
    } else {
      await waitFor(`node ${this.port} to answer`, () => ping(this.port))
    }
  }

  /** SIGSTOP: the node keeps its sockets but answers nothing. */
  pause(): void {
    process.kill(this.pid, 'SIGSTOP')
  }

  resume(): void {
    process.kill(this.pid, 'SIGCONT')
  }

  /** SIGKILL and wait for the process to be gone. */
  async kill(): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    this.resumeQuietly()
    const exited = once(child, 'exit')
    child.kill('SIGKILL')
    await exited
    this.child = null
    this.client?.disconnect()
    this.client = null
  }

  async stop(): Promise<void> {
    await this.kill()
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** A plain client for checking what the node holds (not for paused nodes). */
  redis(): Redis {
    if (this.client === null) {
      this.client = new Redis({ port: this.port, host: '127.0.0.1', lazyConnect: false, maxRetriesPerRequest: 1 })
      // Commands reject while the node is down; the event would only add noise.
      this.client.on('error', () => {})
    }
    return this.client
  }

  private resumeQuietly(): void {
    try {
      this.resume()
    } catch {
      // already gone
    }
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.on('error', () => resolve(false))
  })
}

/** Several independent nodes. */
export class Cluster {
  constructor(readonly nodes: RedisNode[]) {}

  static async start(count: number, options: NodeOptions = {}): Promise<Cluster> {
    const nodes: RedisNode[] = []
    for (let i = 0; i < count; i++) nodes.push(await RedisNode.start(options))
    return new Cluster(nodes)
  }

  get addresses(): string[] {
    return this.nodes.map((node) => node.address)
  }

  /** Every node's value of `key`. */
  values(key: string): Promise<(string | null)[]> {
    return Promise.all(this.nodes.map((node) => node.redis().get(key)))
  }

  /**
   * Waits until every node holds `expected` (a value per node) for `key`. A
   * call resolves once a majority answered, so the last node may still be
   * applying the command when the caller looks.
   */
  async settled(key: string, expected: (string | null)[]): Promise<void> {
    let last: (string | null)[] = []
    try {
      await waitFor(`${key} to settle`, async () => {
        last = await this.values(key)
        return JSON.stringify(last) === JSON.stringify(expected)
      }, 2_000)
    } catch {
      throw new Error(`${key}: nodes hold ${JSON.stringify(last)}, expected ${JSON.stringify(expected)}`)
    }
  }

  /** Every node's remaining TTL of `key` in ms (-2: no key, -1: no TTL). */
  pttls(key: string): Promise<number[]> {
    return Promise.all(this.nodes.map((node) => node.redis().pttl(key)))
  }

  /** Every node's count of calls of one command, from INFO commandstats. */
  async calls(command: string): Promise<number[]> {
    return Promise.all(
      this.nodes.map(async (node) => {
        const info = await node.redis().info('commandstats')
        const match = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)
        return match ? Number(match[1]) : 0
      }),
    )
  }

  /** Per node, the users of its connections other than the spec's own (the default user), sorted. */
  async clientUsers(): Promise<string[][]> {
    return Promise.all(
      this.nodes.map(async (node) => {
        const list = (await node.redis().call('CLIENT', 'LIST')) as string
        return list
          .split('\n')
          .map((line) => /\buser=(\S+)/.exec(line)?.[1])
          .filter((user): user is string => user !== undefined && user !== 'default')
          .sort()
      }),
    )
  }

  async flush(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.redis().flushall()))
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()))
  }
}

/** Every subset of `0..count` as index lists. */
export function subsets(count: number): number[][] {
  const all: number[][] = []
  for (let mask = 0; mask < 1 << count; mask++) {
    all.push([...Array(count).keys()].filter((i) => mask & (1 << i)))
  }
  return all
}

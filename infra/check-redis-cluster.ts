// Health check of the lock's Redis nodes: for each node whether it answers,
// PING latency, version, role, uptime, memory, persistence and the number of
// lock keys; then a verdict. Exit code 0 healthy (all up), 1 degraded (a
// quorum still answers), 2 down (no quorum).
//
// Usage: npm run redis:health [-- --json] [-- --prefix redlock:] [-- --timeout-ms 1000]
//   [-- --credentials ./module.js]
// Nodes: REDIS_NODES, else REDIS_INSTANCES, else localhost:6379-6381, read
// exactly as the lock reads them. Passwords are used, never printed.
// --credentials names a module whose default export is a credentials
// provider (the lock's `credentials` option, as entraId() makes one).

import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

import { resolveNodes, type CredentialsProvider, type ResolvedNode } from '..'
import { RespConnection, type Reply } from './resp'

export interface NodeHealth {
  node: string
  tls: boolean
  up: boolean
  error?: string
  pingMs?: number
  version?: string
  role?: string
  uptimeSeconds?: number
  usedMemory?: string
  aof?: boolean
  appendfsync?: string
  durable?: boolean
  lockKeys?: number
}

export interface ClusterHealth {
  verdict: 'healthy' | 'degraded' | 'down'
  quorum: number
  up: number
  nodes: NodeHealth[]
}

const EXIT_CODES = { healthy: 0, degraded: 1, down: 2 } as const

function text(reply: Reply): string {
  if (reply instanceof Error) throw reply
  return typeof reply === 'string' ? reply : String(reply)
}

function infoFields(info: string): Map<string, string> {
  const fields = new Map<string, string>()
  for (const line of info.split('\r\n')) {
    const at = line.indexOf(':')
    if (at > 0) fields.set(line.slice(0, at), line.slice(at + 1))
  }
  return fields
}

/** The keys under `prefix` but the fencing counters (`<prefix>fence:*`), which are no locks. */
async function countKeys(connection: RespConnection, prefix: string, timeoutMs: number): Promise<number> {
  const counters = `${prefix}fence:`
  let cursor = '0'
  let count = 0
  do {
    const reply = await connection.command(['SCAN', cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000], timeoutMs)
    if (!Array.isArray(reply)) throw reply instanceof Error ? reply : new Error('unexpected SCAN reply')
    cursor = text(reply[0])
    if (Array.isArray(reply[1])) count += reply[1].filter((key) => !text(key).startsWith(counters)).length
  } while (cursor !== '0')
  return count
}

export async function checkNode(node: ResolvedNode, prefix: string, timeoutMs: number): Promise<NodeHealth> {
  const health: NodeHealth = { node: node.label, tls: node.tls, up: false }
  let connection: RespConnection | null = null
  try {
    connection = await RespConnection.open(node, timeoutMs)
    if (node.db) text(await connection.command(['SELECT', node.db], timeoutMs))
    const started = process.hrtime.bigint()
    const pong = text(await connection.command(['PING'], timeoutMs))
    health.pingMs = Number(process.hrtime.bigint() - started) / 1e6
    if (pong !== 'PONG') throw new Error(`PING answered ${pong}`)
    health.up = true
    const info = infoFields(text(await connection.command(['INFO'], timeoutMs)))
    health.version = info.get('redis_version')
    health.role = info.get('role')
    health.uptimeSeconds = Number(info.get('uptime_in_seconds'))
    health.usedMemory = info.get('used_memory_human')
    health.aof = info.get('aof_enabled') === '1'
    const fsync = await connection.command(['CONFIG', 'GET', 'appendfsync'], timeoutMs)
    if (Array.isArray(fsync) && typeof fsync[1] === 'string') health.appendfsync = fsync[1]
    health.durable = health.aof && health.appendfsync === 'always'
    health.lockKeys = await countKeys(connection, prefix, timeoutMs)
  } catch (error) {
    health.error = (error as Error).message
  } finally {
    connection?.close()
  }
  return health
}

export async function checkCluster(nodes: ResolvedNode[], prefix: string, timeoutMs: number): Promise<ClusterHealth> {
  const results = await Promise.all(nodes.map((node) => checkNode(node, prefix, timeoutMs)))
  const quorum = Math.floor(nodes.length / 2) + 1
  const up = results.filter((r) => r.up).length
  const verdict = up === nodes.length ? 'healthy' : up >= quorum ? 'degraded' : 'down'
  return { verdict, quorum, up, nodes: results }
}

function duration(seconds: number): string {
  if (seconds < 60) return `${seconds}s`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${seconds % 60}s`
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`
  return `${Math.floor(seconds / 86400)}d ${Math.floor((seconds % 86400) / 3600)}h`
}

function report(health: ClusterHealth, prefix: string): string {
  const lines = [`Redis lock nodes: ${health.nodes.length}, quorum ${health.quorum}`]
  for (const node of health.nodes) {
    if (!node.up) {
      lines.push(`  ✗ ${node.node}${node.tls ? ' (tls)' : ''}  down: ${node.error}`)
      continue
    }
    const persistence = node.aof
      ? `aof on, appendfsync ${node.appendfsync ?? 'unknown'}${node.durable ? '' : ' (not durable: locks can be lost on a crash)'}`
      : 'aof off (locks are lost on a restart)'
    lines.push(
      `  ✓ ${node.node}${node.tls ? ' (tls)' : ''}  ping ${node.pingMs?.toFixed(2)} ms  redis ${node.version}  ${node.role}` +
        `  up ${duration(node.uptimeSeconds ?? 0)}  memory ${node.usedMemory}  ${persistence}` +
        (node.lockKeys === undefined ? `  (${node.error})` : `  ${node.lockKeys} lock keys (${prefix}*)`),
    )
  }
  const down = health.nodes.length - health.up
  const verdicts = {
    healthy: `healthy: all ${health.nodes.length} nodes answer`,
    degraded: `degraded: ${down} of ${health.nodes.length} nodes down; the quorum of ${health.quorum} still answers`,
    down: `down: only ${health.up} of ${health.nodes.length} nodes answer; no lock can be acquired until ${health.quorum} do`,
  }
  lines.push(`Verdict: ${verdicts[health.verdict]}`)
  return lines.join('\n')
}

/** The default export of the module at `file`, which must be a credentials provider. */
async function provider(file: string): Promise<CredentialsProvider> {
  const loaded = (await import(pathToFileURL(path.resolve(file)).href)) as { default?: unknown }
  // A CommonJS module's exports arrive as the default export, once or twice wrapped.
  let exported = loaded.default
  if (typeof exported === 'object' && exported !== null && 'default' in exported) exported = exported.default
  if (typeof exported !== 'function') throw new Error(`--credentials ${file}: the module's default export must be a credentials provider (a function)`)
  return exported as CredentialsProvider
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      prefix: { type: 'string', default: 'redlock:' },
      'timeout-ms': { type: 'string', default: '1000' },
      credentials: { type: 'string' },
    },
  })
  const nodes = resolveNodes(values.credentials === undefined ? undefined : { credentials: await provider(values.credentials) })
  const health = await checkCluster(nodes, values.prefix, Number(values['timeout-ms']))
  console.log(values.json ? JSON.stringify(health, null, 2) : report(health, values.prefix))
  process.exitCode = EXIT_CODES[health.verdict]
}

if (require.main === module) {
  main().catch((error: Error & { code?: string }) => {
    console.error(`health check failed: ${error.message}`)
    process.exitCode = 2
  })
}

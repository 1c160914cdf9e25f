// Health check of the lock's Redis nodes, printed from the lock's own
// health(): for each node whether it answers, PING latency, version, role,
// uptime, memory, persistence and the number of lock keys; then a verdict. Exit code 0 healthy (all up), 1 degraded (a
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

import { DistributedLock, resolveNodes, type CredentialsProvider, type DistributedLockOptions, type HealthReport } from '..'

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
  quarantineMs?: number
  lockKeys?: number
}

export interface ClusterHealth {
  verdict: 'healthy' | 'degraded' | 'down'
  quorum: number
  up: number
  /** The nodes that answer and count toward the quorum (out of the restart quarantine). */
  counted: number
  nodes: NodeHealth[]
}

const EXIT_CODES = { healthy: 0, degraded: 1, down: 2 } as const

/** Bytes as Redis's `used_memory_human` writes them. */
function humanBytes(bytes: number): string {
  const units = ['B', 'K', 'M', 'G', 'T']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${bytes}B` : `${value.toFixed(2)}${units[unit]}`
}

function optional<T>(value: T | null | undefined): T | undefined {
  return value ?? undefined
}

/** The cluster as the lock's own `health()` sees it, with a lock built from `options`. */
export async function checkCluster(options: DistributedLockOptions & { key_prefix: string }): Promise<ClusterHealth> {
  const resolved = resolveNodes(options)
  const lock = new DistributedLock(options)
  let report: HealthReport
  try {
    // The first call opens the connections, so that the second times PING alone.
    await lock.health()
    report = await lock.health({ lock_keys: true })
  } finally {
    await lock.close()
  }
  const nodes = report.nodes.map((node, i): NodeHealth => ({
    node: node.node,
    tls: resolved[i].tls,
    up: node.answers,
    error: optional(node.error ?? node.lockKeysError),
    pingMs: optional(node.latencyMs),
    version: optional(node.version),
    role: optional(node.role),
    uptimeSeconds: node.uptimeMs == null ? undefined : Math.floor(node.uptimeMs / 1000),
    usedMemory: node.usedMemoryBytes == null ? undefined : humanBytes(node.usedMemoryBytes),
    aof: optional(node.aof),
    appendfsync: optional(node.appendfsync),
    durable: node.answers ? node.durable === true : undefined,
    quarantineMs: node.answers ? node.quarantineMs : undefined,
    lockKeys: optional(node.lockKeys),
  }))
  const up = nodes.filter((node) => node.up).length
  const verdict = !report.quorumReachable ? 'down' : up === nodes.length ? 'healthy' : 'degraded'
  return { verdict, quorum: report.quorum, up, counted: report.counted, nodes }
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
    const persistence =
      node.aof === undefined
        ? 'persistence unknown'
        : node.aof
          ? `aof on, appendfsync ${node.appendfsync ?? 'unknown'}${node.durable ? '' : ' (not durable: locks can be lost on a crash)'}`
          : 'aof off (locks are lost on a restart)'
    const quarantine = node.quarantineMs ? `  quarantined for ${Math.ceil(node.quarantineMs / 1000)}s (its vote does not count yet)` : ''
    lines.push(
      `  ✓ ${node.node}${node.tls ? ' (tls)' : ''}  ping ${node.pingMs?.toFixed(2)} ms  redis ${node.version ?? 'unknown'}  ${node.role ?? 'role unknown'}` +
        `  up ${duration(node.uptimeSeconds ?? 0)}  memory ${node.usedMemory ?? 'unknown'}  ${persistence}${quarantine}` +
        (node.lockKeys === undefined ? `  (${node.error})` : `  ${node.lockKeys} lock keys (${prefix}*)`),
    )
  }
  const down = health.nodes.length - health.up
  const verdicts = {
    healthy: `healthy: all ${health.nodes.length} nodes answer`,
    degraded: `degraded: ${down} of ${health.nodes.length} nodes down; the quorum of ${health.quorum} still answers`,
    down:
      health.counted < health.up
        ? `down: ${health.up} of ${health.nodes.length} nodes answer but only ${health.counted} count (the others are quarantined after a restart); no lock can be acquired until ${health.quorum} do`
        : `down: only ${health.up} of ${health.nodes.length} nodes answer; no lock can be acquired until ${health.quorum} do`,
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
  const timeoutMs = Number(values['timeout-ms'])
  const health = await checkCluster({
    key_prefix: values.prefix,
    connect_timeout_ms: timeoutMs,
    command_timeout_ms: timeoutMs,
    ...(values.credentials === undefined ? {} : { credentials: await provider(values.credentials) }),
  })
  console.log(values.json ? JSON.stringify(health, null, 2) : report(health, values.prefix))
  process.exitCode = EXIT_CODES[health.verdict]
}

if (require.main === module) {
  main().catch((error: Error & { code?: string }) => {
    console.error(`health check failed: ${error.message}`)
    process.exitCode = 2
  })
}

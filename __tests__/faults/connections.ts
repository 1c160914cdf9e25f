// Whose connection is this: the fault suite's view of the clients of its
// nodes. A node's CLIENT LIST names a client only by the address of its
// socket (the library sets no client name), so the owner is found from the
// client's side: the kernel's socket table (/proc/net/tcp: each socket's
// local and remote address and inode) and each process's descriptors
// (/proc/<pid>/fd: socket:[inode]). A worker holds no connection but its
// locks', so every socket it holds to a node belongs to one of them. Linux
// only, as SIGSTOP and the rest of the suite are.

import { readdirSync, readFileSync, readlinkSync } from 'node:fs'

import Redis from 'ioredis'

import type { RedisNode } from '../helpers/redis'

/** A TCP socket of a process: its local port and the port it is connected to. */
export interface Socket {
  localPort: number
  remotePort: number
}

/** The TCP sockets (v4 and v6) process `pid` holds open that are connected to one of `ports`; empty once it exited. */
export function socketsOf(pid: number, ports: Set<number>): Socket[] {
  let inodes: Set<string>
  try {
    inodes = new Set(readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
      try {
        const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
        return match ? [match[1]] : []
      } catch {
        return [] // closed meanwhile
      }
    }))
  } catch {
    return [] // exited
  }
  const sockets: Socket[] = []
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let lines: string[]
    try {
      lines = readFileSync(table, 'utf8').trim().split('\n').slice(1)
    } catch {
      continue // no IPv6
    }
    for (const line of lines) {
      const fields = line.trim().split(/\s+/)
      const [localPort, remotePort] = [fields[1], fields[2]].map((address) => parseInt(address.slice(address.lastIndexOf(':') + 1), 16))
      if (inodes.has(fields[9]) && ports.has(remotePort)) sockets.push({ localPort, remotePort })
    }
  }
  return sockets
}

/** One client of a node, from CLIENT LIST. */
export interface Client {
  /** The client's port (its socket's local port). */
  port: number
  flags: string
  /** How many channels it is subscribed to. */
  channels: number
  /** The last command it ran. */
  command: string
}

/**
 * Whether the client is a subscription connection: in pub/sub mode, or, as
 * a RESP2 connection leaves that mode with its last channel, one whose last
 * command was to subscribe or unsubscribe.
 */
export const subscribing = (client: Client) =>
  client.flags.includes('P') || client.channels > 0 || /^[ps]?(un)?subscribe$/.test(client.command)

/** Runs `query` on a fresh connection to `node`; `null` when the node does not answer (paused, restarting). */
export async function probe<T>(node: RedisNode, query: (client: Redis) => Promise<T>): Promise<T | null> {
  const client = new Redis({ host: '127.0.0.1', port: node.port, commandTimeout: 500, maxRetriesPerRequest: 0, lazyConnect: true })
  // A node restarting meanwhile refuses the connection; the probe says so by returning null.
  client.on('error', () => {})
  try {
    await client.connect()
    return await query(client)
  } catch {
    return null
  } finally {
    client.disconnect()
  }
}

/** The node's clients; `null` when it does not answer. */
export function clientsOf(node: RedisNode): Promise<Client[] | null> {
  return probe(node, async (client) => {
    const list = (await client.call('CLIENT', 'LIST')) as string
    return list.trim().split('\n').map((line) => {
      const fields = new Map(line.trim().split(' ').map((pair) => {
        const at = pair.indexOf('=')
        return [pair.slice(0, at), pair.slice(at + 1)] as [string, string]
      }))
      const addr = fields.get('addr') ?? ''
      return {
        port: Number(addr.slice(addr.lastIndexOf(':') + 1)),
        flags: fields.get('flags') ?? '',
        channels: Number(fields.get('sub') ?? 0) + Number(fields.get('psub') ?? 0) + Number(fields.get('ssub') ?? 0),
        command: fields.get('cmd') ?? '',
      }
    })
  })
}

/** The channels matching `pattern` that have a subscriber on the node, with how many; `null` when it does not answer. */
export function channelsOf(node: RedisNode, pattern: string): Promise<Map<string, number> | null> {
  return probe(node, async (client) => {
    const channels = (await client.call('PUBSUB', 'CHANNELS', pattern)) as string[]
    if (channels.length === 0) return new Map()
    const counts = (await client.call('PUBSUB', 'NUMSUB', ...channels)) as (string | number)[]
    const found = new Map<string, number>()
    for (let i = 0; i < counts.length; i += 2) found.set(String(counts[i]), Number(counts[i + 1]))
    return found
  })
}

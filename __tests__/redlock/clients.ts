// What the redlock specs share: ioredis clients for a cluster's nodes, the
// way redlock's users make them, and Redlocks on them that are quit however
// the test that made them ends.

import { afterEach } from 'node:test'

import Redis, { type RedisOptions } from 'ioredis'

import Redlock from '../../redlock.js'
import type { Cluster } from '../helpers/redis'

export interface Redlocks {
  /** A Redlock on fresh ioredis clients of `cluster`'s nodes (with `options`), quit after the test. */
  make(nodes: Cluster | number[], settings?: ConstructorParameters<typeof Redlock>[1], options?: RedisOptions): { redlock: Redlock<Redis>; clients: Redis[] }
  /** ioredis clients of `cluster`'s nodes (or of local ports), disconnected after the test unless a Redlock quit them. */
  clients(nodes: Cluster | number[], options?: RedisOptions): Redis[]
}

/** Registers an `afterEach` (call it in a `describe` body) that quits what the test made. */
export function useRedlocks(): Redlocks {
  const made: Redlock<Redis>[] = []
  const loose: Redis[] = []
  afterEach(async () => {
    for (const redlock of made.splice(0)) await redlock.quit().catch(() => {})
    for (const client of loose.splice(0)) client.disconnect()
  })
  const clients = (nodes: Cluster | number[], options: RedisOptions = {}): Redis[] =>
    (Array.isArray(nodes) ? nodes : nodes.nodes.map((node) => node.port)).map((port) => {
      const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, ...options })
      // Only the commands the test sends itself should fail loudly.
      client.on('error', () => {})
      loose.push(client)
      return client
    })
  return {
    clients,
    make(nodes, settings, options) {
      const own = clients(nodes, options)
      const redlock = new Redlock(own, settings)
      made.push(redlock)
      return { redlock, clients: own }
    },
  }
}

/** The node of each vote against in an attempt's stats, as indexes into `clients`, and its error. */
export function againstOf(stats: Redlock.ExecutionStats<Redis>, clients: Redis[]): { node: number; error: Error }[] {
  return [...stats.votesAgainst].map(([client, error]) => ({ node: clients.indexOf(client), error }))
}

/** The indexes into `clients` of an attempt's votes for. */
export function forOf(stats: Redlock.ExecutionStats<Redis>, clients: Redis[]): number[] {
  return [...stats.votesFor].map((client) => clients.indexOf(client)).sort()
}

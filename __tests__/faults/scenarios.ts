// The fault suite's scenarios: what each nemesis does to the nodes while
// the workers take locks, and what it records for the checks in run.ts.

import Redis from 'ioredis'

import { waitFor, type RedisNode } from '../helpers/redis'

/** The TTL every worker uses, and so the longest TTL in use. */
export const TTL_MS = 1_000
/** Every worker's `command_timeout_ms`: the bounds of a wait and of `close()` count it once. */
export const COMMAND_TIMEOUT_MS = 150

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const pick = <T>(items: T[], count: number): T[] => [...items].sort(() => Math.random() - 0.5).slice(0, count)

/** What the nemesis did, for the checks that depend on it. */
export interface Faults {
  /** Nodes that cannot answer right now: the leak probe skips them. */
  faulted: Set<RedisNode>
  /** Monotonic ns windows during which no acquire begun in them may succeed. */
  noGrant: { from: bigint; to: bigint }[]
}

export interface Scenario {
  name: string
  /** The availability baseline of the scenarios with as much `waiting` as it. */
  baseline?: boolean
  /** The control: must show overlaps. */
  control?: boolean
  quarantine?: boolean
  fencing?: boolean
  /**
   * Every acquire waits (`wait_ms`), some waits are aborted, one worker
   * closes its lock mid-run and makes a new one, and a process that never
   * closes its lock keeps a wait open (the control of the subscription checks).
   */
  waiting?: boolean
  nemesis: (nodes: RedisNode[], faults: Faults, until: number) => Promise<void>
}

const minority = (n: number) => Math.floor((n - 1) / 2)

async function pauseFor(node: RedisNode, ms: number, faults: Faults): Promise<void> {
  faults.faulted.add(node)
  node.pause()
  await sleep(ms)
  node.resume()
  faults.faulted.delete(node)
}

async function restart(node: RedisNode, afterMs: number, faults: Faults): Promise<void> {
  faults.faulted.add(node)
  await node.kill()
  await sleep(afterMs)
  await node.start()
  faults.faulted.delete(node)
}

/**
 * The hole Redlock has without quarantine: while `paused` cannot vote, locks
 * are granted by the others, `crashed` among them; then `paused` comes back
 * and `crashed` restarts at once without its data, so `paused` and
 * `crashed` together form a majority that knows nothing of those locks.
 */
async function crashBehindAPause(nodes: RedisNode[], faults: Faults, until: number): Promise<void> {
  const m = minority(nodes.length)
  while (Date.now() < until - TTL_MS) {
    const [paused, crashed] = [pick(nodes, m), [] as RedisNode[]]
    crashed.push(...pick(nodes.filter((node) => !paused.includes(node)), m))
    for (const node of paused) {
      faults.faulted.add(node)
      node.pause()
    }
    // The crash follows as soon as a lock is held without the paused nodes
    // (its key is on a node about to crash), while that lock is still held.
    const held = () => crashed[0].redis().keys('redlock:*').then((keys) => keys.length > 0)
    await waitFor('a lock granted during the pause', held, 1_500).catch(() => {})
    await Promise.all([
      ...paused.map(async (node) => {
        node.resume()
        faults.faulted.delete(node)
      }),
      ...crashed.map((node) => restart(node, 0, faults)),
    ])
    await sleep(300)
  }
}

export const SCENARIOS: Scenario[] = [
  { name: 'no faults', baseline: true, nemesis: async () => {} },
  {
    name: 'a minority paused (SIGSTOP/SIGCONT) repeatedly',
    async nemesis(nodes, faults, until) {
      while (Date.now() < until - 1_000) {
        await Promise.all(pick(nodes, minority(nodes.length)).map((node) => pauseFor(node, 200 + Math.random() * 400, faults)))
        await sleep(200 + Math.random() * 300)
      }
    },
  },
  {
    name: 'a minority killed, restarted after the longest TTL',
    async nemesis(nodes, faults, until) {
      while (Date.now() < until - 2 * TTL_MS) {
        await Promise.all(pick(nodes, minority(nodes.length)).map((node) => restart(node, TTL_MS + 300, faults)))
        await sleep(TTL_MS + 300)
      }
    },
  },
  { name: 'a minority killed and restarted at once without its data (quarantine on)', nemesis: crashBehindAPause },
  {
    name: 'the same with quarantine off (control: must overlap)',
    control: true,
    quarantine: false,
    nemesis: crashBehindAPause,
  },
  {
    name: 'a majority paused for 1.5 s',
    async nemesis(nodes, faults, until) {
      await sleep(Math.min(2_000, (until - Date.now()) / 4))
      const majority = pick(nodes, nodes.length - minority(nodes.length))
      const from = process.hrtime.bigint()
      for (const node of majority) {
        faults.faulted.add(node)
        node.pause()
      }
      await sleep(1_500)
      // Read before the first SIGCONT: the first node back restores a quorum,
      // and a grant may follow within microseconds, sooner than this process
      // could read the clock after resuming on a busy machine.
      const to = process.hrtime.bigint()
      for (const node of majority) {
        node.resume()
        faults.faulted.delete(node)
      }
      // Replies sent before the pause may still arrive: 50 ms of slack.
      faults.noGrant.push({ from: from + 50_000_000n, to })
    },
  },
  {
    name: 'one node slowed with DEBUG SLEEP',
    async nemesis(nodes, _faults, until) {
      const slow = new Redis({ host: '127.0.0.1', port: nodes[0].port })
      try {
        while (Date.now() < until - 1_000) {
          await slow.call('DEBUG', 'SLEEP', '0.3')
          await sleep(200)
        }
      } finally {
        slow.disconnect()
      }
    },
  },
  {
    name: 'fencing on, a minority paused repeatedly',
    fencing: true,
    async nemesis(nodes, faults, until) {
      while (Date.now() < until - 1_000) {
        await Promise.all(pick(nodes, minority(nodes.length)).map((node) => pauseFor(node, 200 + Math.random() * 400, faults)))
        await sleep(200 + Math.random() * 300)
      }
    },
  },
  { name: 'waiting, no faults', baseline: true, waiting: true, nemesis: async () => {} },
  {
    name: 'waiting, a minority paused (SIGSTOP/SIGCONT) repeatedly',
    waiting: true,
    async nemesis(nodes, faults, until) {
      // Pauses longer than a command timeout and than many waits: waits
      // begin, subscribe and end while a node is stopped, and a lock made
      // anew during a pause meets a node that never answered it.
      while (Date.now() < until - 1_500) {
        await Promise.all(pick(nodes, minority(nodes.length)).map((node) => pauseFor(node, 200 + Math.random() * 1_000, faults)))
        await sleep(100 + Math.random() * 300)
      }
    },
  },
  {
    name: 'waiting, a minority killed and restarted',
    waiting: true,
    async nemesis(nodes, faults, until) {
      // Restarted at once or after the longest TTL: the subscriptions to it
      // are refused, then opened again. A node back early is quarantined
      // for the longest TTL and up to a second more (the lock reads its
      // uptime in whole seconds), so the next kill waits that out: a node
      // killed sooner would make a majority that does not count.
      while (Date.now() < until - 2 * TTL_MS) {
        await Promise.all(pick(nodes, minority(nodes.length)).map((node) => restart(node, Math.random() * (TTL_MS + 300), faults)))
        await sleep(TTL_MS + 1_100 + Math.random() * 300)
      }
    },
  },
  {
    name: 'waiting, a minority slowed with DEBUG SLEEP',
    waiting: true,
    async nemesis(nodes, _faults, until) {
      // Each sleep outlasts a command timeout now and then: a slowed node's
      // SUBSCRIBE, UNSUBSCRIBE and votes time out and its connections are
      // dropped and opened again.
      const slow = pick(nodes, minority(nodes.length)).map((node) => new Redis({ host: '127.0.0.1', port: node.port }))
      try {
        await Promise.all(slow.map(async (client) => {
          while (Date.now() < until - 1_000) {
            await client.call('DEBUG', 'SLEEP', (0.05 + Math.random() * 0.45).toFixed(2))
            await sleep(50 + Math.random() * 200)
          }
        }))
      } finally {
        for (const client of slow) client.disconnect()
      }
    },
  },
]

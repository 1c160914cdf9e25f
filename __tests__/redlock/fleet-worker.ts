// One process of the mixed fleet: npm redlock@5.0.0-beta.2 or
// redis-quorum-lock/redlock, taking, holding, extending and releasing locks
// until its deadline with the same code (only the import differs), and
// printing one JSON line per belief interval on the machine's monotonic
// clock, which every process shares.

import { writeSync } from 'node:fs'

import Redis from 'ioredis'
import NpmRedlock from 'redlock'

import Redlock from '../../redlock.js'

export interface FleetConfig {
  id: string
  kind: 'npm' | 'ours'
  ports: number[]
  ttlMs: number
  /** Epoch ms at which the worker stops taking locks. */
  until: number
  /** Each group is one loop of this process on its resources, through clients with its keyPrefix. */
  groups: { name: string; resources: string[]; keyPrefix: string }[]
}

export type FleetLine =
  | { kind: 'interval'; group: string; owner: string; resource: string; called: string; start: string; end: string }
  | { kind: 'expired'; group: string }
  | { kind: 'error'; message: string }
  | { kind: 'done' }

/** The part of the Redlock API both libraries share, as this worker uses it. */
interface Held {
  value: string
  expiration: number
  extend(duration: number): Promise<Held>
  release(): Promise<unknown>
}
interface Locker {
  acquire(resources: string[], duration: number): Promise<Held>
  quit(): Promise<void>
}

const config = JSON.parse(process.argv[2]) as FleetConfig
const emit = (line: FleetLine) => writeSync(1, JSON.stringify(line) + '\n')
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const random = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1))
const now = () => process.hrtime.bigint()
let handles = 0

/** Where on the monotonic clock a lock's `expiration` (epoch ms) falls, read right after it was set. */
function monotonicEnd(expiration: number): bigint {
  return now() + BigInt(Math.floor((expiration - Date.now()) * 1e6))
}

function locker(keyPrefix: string): Locker {
  const clients = config.ports.map((port) => new Redis({ host: '127.0.0.1', port, keyPrefix }))
  const settings = { retryCount: 3, retryDelay: 10, retryJitter: 10 }
  return config.kind === 'npm' ? new NpmRedlock(clients, settings) : new Redlock(clients, settings)
}

function isExecutionError(error: unknown): boolean {
  return error instanceof Error && error.name === 'ExecutionError'
}

async function loop(group: FleetConfig['groups'][number]): Promise<void> {
  const redlock = locker(group.keyPrefix)
  while (Date.now() < config.until) {
    const resource = group.resources[random(0, group.resources.length - 1)]
    const called = now()
    let lock: Held
    try {
      lock = await redlock.acquire([resource], config.ttlMs)
    } catch (error) {
      if (!isExecutionError(error)) emit({ kind: 'error', message: String(error) })
      continue
    }
    const start = now()
    let end = monotonicEnd(lock.expiration)
    if (end <= start) {
      // Already expired when handed over: its holder cannot believe it holds anything.
      emit({ kind: 'expired', group: group.name })
      await lock.release().catch(() => {})
      continue
    }
    await sleep(random(1, config.ttlMs / 8))
    if (Math.random() < 0.3) {
      try {
        lock = await lock.extend(config.ttlMs)
        end = monotonicEnd(lock.expiration)
        await sleep(random(1, config.ttlMs / 8))
      } catch {
        // The holder believed it held the lock until it learned otherwise.
        const answered = now()
        if (answered < end) end = answered
      }
    }
    const releasing = now()
    if (releasing < end) end = releasing
    emit({ kind: 'interval', group: group.name, owner: `${config.id}#${handles++}`, resource, called: String(called), start: String(start), end: String(end) })
    await lock.release().catch(() => {})
  }
  await redlock.quit()
}

Promise.all(config.groups.map(loop)).then(
  () => {
    emit({ kind: 'done' })
    process.exit(0)
  },
  (error: unknown) => {
    emit({ kind: 'error', message: String(error) })
    process.exit(1)
  },
)

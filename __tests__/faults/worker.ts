// One worker process of the fault suite: takes, holds, extends and releases
// locks on a few resources until its deadline, and prints one JSON line per
// belief interval (and per error) on the machine's monotonic clock, which
// every process shares. A worker in 'overstay' mode holds past its TTL now
// and then; one in 'crash' mode exits without releasing after its first hold.

import { writeSync } from 'node:fs'

import { DistributedLock, type LockError, type LockHandle } from '../..'

export interface WorkerConfig {
  id: string
  addresses: string[]
  resources: string[]
  ttlMs: number
  /** Epoch ms at which the worker stops taking locks. */
  until: number
  mode: 'normal' | 'overstay' | 'crash'
  quarantine: boolean
  fencing: boolean
  /** Concurrent loops in this process. */
  loops: number
}

export type WorkerLine =
  | { kind: 'interval'; owner: string; resource: string; called: string; start: string; end: string; token?: string }
  | { kind: 'error'; code: string; message: string }

const config = JSON.parse(process.argv[2]) as WorkerConfig
const lock = new DistributedLock({
  redis_nodes: config.addresses,
  lock_ttl_ms: config.ttlMs,
  retry_count: 3,
  retry_delay_ms: 10,
  retry_jitter_ms: 10,
  command_timeout_ms: 150,
  restart_quarantine: config.quarantine,
})
let handles = 0

const emit = (line: WorkerLine) => writeSync(1, JSON.stringify(line) + '\n')
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const random = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1))
const now = () => process.hrtime.bigint()
const ms = (n: number) => BigInt(Math.floor(n * 1e6))

function report(handle: LockHandle, owner: string, called: bigint, start: bigint, end: bigint): void {
  emit({
    kind: 'interval',
    owner,
    resource: handle.resource,
    called: String(called),
    start: String(start),
    end: String(end),
    ...(handle.fencingToken === null ? {} : { token: String(handle.fencingToken) }),
  })
}

/** `called`: when the acquire call began; the interval starts when it resolved. */
async function hold(handle: LockHandle, called: bigint): Promise<void> {
  const start = now()
  const owner = `${config.id}#${handles++}`
  // The belief ends when the validity the library reported ends, at the
  // latest; validityMs counts from the start of the call (index.d.ts), not
  // from when a busy event loop got to the result.
  let end = called + ms(handle.validityMs)
  if (config.mode === 'crash') {
    await sleep(random(5, config.ttlMs / 2))
    const death = now()
    report(handle, owner, called, start, death < end ? death : end)
    process.exit(0)
  }
  if (config.mode === 'overstay' && Math.random() < 0.3) {
    await sleep(config.ttlMs * 1.3)
  } else {
    await sleep(random(1, config.ttlMs / 4))
    if (Math.random() < 0.3) {
      const extending = now()
      const extended = await lock.extend(handle).catch(() => false)
      const answered = now()
      if (extended) end = extending + ms(handle.validityMs)
      else if (answered < end) end = answered
      await sleep(random(1, config.ttlMs / 4))
    }
  }
  const releasing = now()
  report(handle, owner, called, start, releasing < end ? releasing : end)
  await lock.release(handle).catch((error: LockError) => emit({ kind: 'error', code: error.code, message: error.message }))
}

async function loop(): Promise<void> {
  while (Date.now() < config.until) {
    const resource = config.resources[random(0, config.resources.length - 1)]
    let handle: LockHandle | null
    const called = now()
    try {
      handle = await lock.acquire(resource, config.ttlMs, { fencing: config.fencing })
    } catch (error) {
      const e = error as LockError
      emit({ kind: 'error', code: e.code, message: e.message })
      await sleep(20)
      continue
    }
    if (handle === null) {
      await sleep(random(1, 10))
      continue
    }
    await hold(handle, called)
  }
}

process.on('unhandledRejection', (error) => {
  emit({ kind: 'error', code: 'UNHANDLED_REJECTION', message: String(error) })
  process.exit(1)
})

Promise.all(Array.from({ length: config.loops }, loop))
  .then(() => lock.close())
  .catch((error: Error) => {
    emit({ kind: 'error', code: 'WORKER_CRASH', message: error.stack ?? String(error) })
    process.exit(1)
  })

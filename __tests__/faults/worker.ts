// One worker process of the fault suite: takes, holds, extends and releases
// locks on a few resources until its deadline, and prints one JSON line per
// belief interval, per acquire call (when it was called and when it
// settled), per close() and per error, on the machine's monotonic clock,
// which every process shares. A worker in 'overstay' mode holds past its
// TTL now and then; one in 'crash' mode exits without releasing after its
// first hold; one in 'unclosed' mode is the control of the subscription
// checks: it keeps a wait open and never closes that lock.
//
// After its deadline a worker lets every call settle and says 'settled',
// its lock still open; told `close` on stdin, it closes the lock and says
// 'closed'; then it stays until stdin ends, so the runner can look for
// connections it still holds, and exits by itself (nothing may keep it
// alive after close()).

import { writeSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'

import { DistributedLock, type LockError, type LockHandle } from '../..'

export interface WorkerConfig {
  id: string
  addresses: string[]
  resources: string[]
  ttlMs: number
  commandTimeoutMs: number
  /** Epoch ms at which the worker stops taking locks. */
  until: number
  mode: 'normal' | 'overstay' | 'crash' | 'unclosed'
  quarantine: boolean
  fencing: boolean
  /** Concurrent loops in this process. */
  loops: number
  /** Every acquire waits `wait_ms` drawn from [minMs, maxMs]; `abortShare` of them get an abort at a random moment. */
  wait?: { minMs: number; maxMs: number; abortShare: number }
  /** Closes the lock this often and goes on with a new one, calls in flight. */
  renewEveryMs?: number
}

export type WorkerLine =
  | { kind: 'interval'; owner: string; resource: string; called: string; start: string; end: string; token?: string }
  | { kind: 'error'; code: string; message: string }
  | {
    kind: 'call'
    /** `wait_ms`, when the call waited. */
    waitMs: number | null
    called: string
    /** `null`: still pending when the worker gave up on it. */
    settled: string | null
    /** 'acquired', 'null' or the error code. */
    outcome: string
    /** When the call's signal was aborted, if before it settled. */
    aborted?: string
    /** When close() of the call's lock was called, if before it settled. */
    closing?: string
  }
  /** `settled: null`: still pending when the worker gave up on it. */
  | { kind: 'close'; called: string; settled: string | null }
  | { kind: 'lag'; maxMs: number; p99Ms: number }
  | { kind: 'settled' }
  | { kind: 'closed' }

const config = JSON.parse(process.argv[2]) as WorkerConfig

const emit = (line: WorkerLine) => writeSync(1, JSON.stringify(line) + '\n')
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const random = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1))
const now = () => process.hrtime.bigint()
const ms = (n: number) => BigInt(Math.floor(n * 1e6))

/** One DistributedLock of this worker, and when its close() was called. */
interface Instance {
  lock: DistributedLock
  closedAt: bigint | null
  /** Resolves when close() is called. */
  closing: Promise<void>
  close: () => Promise<void>
}

/** A close() still pending this long is reported as such, and the worker goes on. */
const GIVE_UP_CLOSE_MS = 5_000

function newInstance(): Instance {
  const lock = new DistributedLock({
    redis_nodes: config.addresses,
    lock_ttl_ms: config.ttlMs,
    retry_count: 3,
    retry_delay_ms: 10,
    retry_jitter_ms: 10,
    command_timeout_ms: config.commandTimeoutMs,
    restart_quarantine: config.quarantine,
  })
  let told = () => {}
  const instance: Instance = {
    lock,
    closedAt: null,
    closing: new Promise<void>((resolve) => (told = resolve)),
    close: async () => {
      const called = now()
      instance.closedAt = called
      told()
      const line: WorkerLine = { kind: 'close', called: String(called), settled: null }
      let timer: NodeJS.Timeout | undefined
      const gaveUp = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, GIVE_UP_CLOSE_MS)
      })
      await Promise.race([lock.close().then(() => (line.settled = String(now()))), gaveUp])
      clearTimeout(timer)
      emit(line)
    },
  }
  return instance
}

/** The lock the loops take their next locks with; renewing replaces it. */
let current: Instance
let handles = 0
/** Acquire calls not settled yet, reported as pending if the worker gives up on them. */
const pending = new Set<Extract<WorkerLine, { kind: 'call' }>>()

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

/**
 * When the validity the library reported for `handle` ends, on the monotonic
 * clock: the later of `expiresAt` (the end of the guaranteed validity, read
 * now against the wall clock, to the ms) and `since + validityMs` (the
 * deadline index.d.ts gives, counted from the start of the call). For a
 * call that waited, `expiresAt` is the later by up to the wait: the belief
 * of a holder that reads it is the longer one, and the one checked.
 */
function validUntil(handle: LockHandle, since: bigint): bigint {
  const byDate = now() + ms(handle.expiresAt - Date.now())
  const byCall = since + ms(handle.validityMs)
  return byDate > byCall ? byDate : byCall
}

/** Sleeps `duration` ms, or less if the instance's close() is called meanwhile. */
const holdFor = (instance: Instance, duration: number) => Promise.race([sleep(duration), instance.closing])

/** `called`: when the acquire call began; the interval starts when it resolved. */
async function hold(instance: Instance, handle: LockHandle, called: bigint): Promise<void> {
  const start = now()
  const owner = `${config.id}#${handles++}`
  // A lock whose instance closed before the handle arrived was released by
  // that close(): nobody believes it is held.
  if (instance.closedAt !== null) return
  let end = validUntil(handle, called)
  const ended = (at: bigint) => {
    // close() releases the lock: the belief ends when it is called.
    const cut = instance.closedAt !== null && instance.closedAt < at ? instance.closedAt : at
    report(handle, owner, called, start, cut < end ? cut : end)
  }
  if (config.mode === 'crash') {
    await sleep(random(5, config.ttlMs / 2))
    ended(now())
    process.exit(0)
  }
  if (config.mode === 'overstay' && Math.random() < 0.3) {
    await holdFor(instance, config.ttlMs * 1.3)
  } else {
    await holdFor(instance, random(1, config.ttlMs / 4))
    if (instance.closedAt === null && Math.random() < 0.3) {
      const extending = now()
      const extended = await instance.lock.extend(handle).catch(() => false)
      const answered = now()
      if (extended) end = validUntil(handle, extending)
      else if (answered < end) end = answered
      await holdFor(instance, random(1, config.ttlMs / 4))
    }
  }
  ended(now())
  if (instance.closedAt !== null) return
  await instance.lock.release(handle).catch((error: LockError) => emit({ kind: 'error', code: error.code, message: error.message }))
}

/** One acquire on `instance`, timed from its call to its settling; a waiting one maybe aborted on the way. */
async function acquire(instance: Instance, resource: string): Promise<LockHandle | null> {
  const waitMs = config.wait ? random(config.wait.minMs, config.wait.maxMs) : null
  const call: Extract<WorkerLine, { kind: 'call' }> = { kind: 'call', waitMs, called: '', settled: null, outcome: '' }
  let abortTimer: NodeJS.Timeout | undefined
  const options: { fencing: boolean; wait_ms?: number; signal?: AbortSignal } = { fencing: config.fencing }
  if (waitMs !== null) {
    options.wait_ms = waitMs
    if (Math.random() < config.wait!.abortShare) {
      const controller = new AbortController()
      options.signal = controller.signal
      // Up to past the wait: an abort after the call settled must change nothing.
      abortTimer = setTimeout(() => {
        if (call.settled === null) call.aborted = String(now())
        controller.abort()
      }, random(0, waitMs * 1.2))
    }
  }
  const settle = (outcome: string) => {
    clearTimeout(abortTimer)
    call.settled = String(now())
    call.outcome = outcome
    if (instance.closedAt !== null && instance.closedAt < BigInt(call.settled) && instance.closedAt > BigInt(call.called)) {
      call.closing = String(instance.closedAt)
    }
    if (pending.delete(call)) emit(call)
  }
  pending.add(call)
  const called = now()
  call.called = String(called)
  let handle: LockHandle | null
  try {
    handle = await instance.lock.acquire(resource, config.ttlMs, options)
  } catch (error) {
    const e = error as LockError
    settle(e.code)
    emit({ kind: 'error', code: e.code, message: e.message })
    throw e
  }
  settle(handle === null ? 'null' : 'acquired')
  if (handle !== null) await hold(instance, handle, called)
  return handle
}

async function loop(): Promise<void> {
  while (Date.now() < config.until) {
    const resource = config.resources[random(0, config.resources.length - 1)]
    let handle: LockHandle | null
    try {
      handle = await acquire(current, resource)
    } catch {
      await sleep(20)
      continue
    }
    if (handle === null) await sleep(random(1, 10))
  }
}

/** Resolves when a line equal to `word` arrives on stdin, or when stdin ends. */
function told(word: string): Promise<void> {
  return new Promise((resolve) => {
    let buffer = ''
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString()
      if (buffer.split('\n').includes(word)) done()
    }
    const done = () => {
      process.stdin.off('data', onData)
      process.stdin.off('end', done)
      resolve()
    }
    process.stdin.on('data', onData)
    process.stdin.on('end', done)
  })
}

/** Stdin ends: from then on nothing of the worker's own keeps the process alive. */
const ended = () => new Promise<void>((resolve) => {
  if (process.stdin.readableEnded) return resolve()
  process.stdin.once('end', resolve)
  process.stdin.resume()
})

/** The longest a loop may still legitimately take once the deadline passed: a wait, a hold and its calls. */
function loopsGiveUpMs(): number {
  const longestWait = config.wait?.maxMs ?? 0
  return longestWait + 2 * config.ttlMs + 6 * config.commandTimeoutMs + 1_000
}

async function worker(): Promise<void> {
  current = newInstance()
  const lag = monitorEventLoopDelay({ resolution: 10 })
  lag.enable()
  const renewals: Promise<void>[] = []
  const renewer = config.renewEveryMs === undefined ? undefined : setInterval(() => {
    const old = current
    current = newInstance()
    renewals.push(old.close())
  }, config.renewEveryMs)
  let gaveUp: NodeJS.Timeout | undefined
  await Promise.race([
    Promise.all(Array.from({ length: config.loops }, loop)),
    new Promise<void>((resolve) => {
      gaveUp = setTimeout(resolve, Math.max(0, config.until - Date.now()) + loopsGiveUpMs())
    }),
  ])
  clearTimeout(gaveUp)
  clearInterval(renewer)
  for (const call of pending) emit(call)
  pending.clear()
  await Promise.all(renewals)
  lag.disable()
  emit({ kind: 'lag', maxMs: lag.max / 1e6, p99Ms: lag.percentile(99) / 1e6 })
  emit({ kind: 'settled' })
  await told('close')
  await current.close()
  emit({ kind: 'closed' })
  await ended()
}

/**
 * The control: one lock holds its resource (taken again if lost) while
 * another waits for it, so that lock has a subscription on every node, and
 * that lock is never closed. The runner must find both.
 */
async function unclosed(): Promise<void> {
  const [resource] = config.resources
  const holder = newInstance().lock
  const waiter = newInstance().lock
  const controller = new AbortController()
  let stopNow = () => {}
  const stop = new Promise<void>((resolve) => (stopNow = resolve))
  let stopping = false
  const holding = (async () => {
    while (!stopping) {
      const handle = await holder.acquire(resource, config.ttlMs, { auto_extend: true, wait_ms: 1_000 }).catch(() => null)
      if (handle === null) continue
      await Promise.race([once(handle.signal), stop])
      await handle.release().catch(() => false)
    }
  })()
  const waiting = (async () => {
    while (!stopping) {
      const handle = await waiter.acquire(resource, config.ttlMs, { wait_ms: 600_000, signal: controller.signal }).catch(() => null)
      // The holder lost it for a moment: let it take it again.
      if (handle !== null) await handle.release().catch(() => false)
    }
  })()
  await sleep(Math.max(0, config.until - Date.now()))
  emit({ kind: 'settled' })
  await told('close')
  // Deliberately not closed: the runner must see this process's subscriptions.
  emit({ kind: 'closed' })
  await ended()
  stopping = true
  stopNow()
  controller.abort()
  await Promise.all([holding, waiting])
  await holder.close()
  process.exit(0)
}

function once(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    signal.addEventListener('abort', () => resolve(), { once: true })
  })
}

process.on('unhandledRejection', (error) => {
  emit({ kind: 'error', code: 'UNHANDLED_REJECTION', message: String(error) })
  process.exit(1)
})

;(config.mode === 'unclosed' ? unclosed() : worker()).catch((error: Error) => {
  emit({ kind: 'error', code: 'WORKER_CRASH', message: error.stack ?? String(error) })
  process.exit(1)
})

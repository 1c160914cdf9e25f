// A keeper: a background job of which exactly one instance may run at a time.
// It competes for a named lock, works while it holds it (the library keeps
// the lease alive), waits while another instance holds it, takes over when
// the holder dies or releases, and releases on SIGINT/SIGTERM.
//
// Usage: npm run keeper:start -- --instance us-east-1 --region us-east
//   [--lock pricing-oracle-keeper] [--ttl-ms 10000] [--work-ms 2000] [--retry-ms 1000]
// Nodes: REDIS_NODES, else REDIS_INSTANCES, else localhost:6379-6381.

import { hostname } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'

import { DistributedLock, type LockError, type LockHandle } from '..'
import { fiveNumbers } from './numbers'

const { values } = parseArgs({
  options: {
    instance: { type: 'string', default: `${hostname()}-${process.pid}` },
    region: { type: 'string', default: 'local' },
    lock: { type: 'string', default: 'pricing-oracle-keeper' },
    'ttl-ms': { type: 'string', default: '10000' },
    'work-ms': { type: 'string', default: '2000' },
    'retry-ms': { type: 'string', default: '1000' },
  },
})
const instance = values.instance
const ttlMs = Number(values['ttl-ms'])
const workMs = Number(values['work-ms'])
const retryMs = Number(values['retry-ms'])

const log = (message: string) => console.log(`[${instance}] ${message}`)

const lock = new DistributedLock({ lock_ttl_ms: ttlMs })
/** Aborted on SIGINT/SIGTERM: ends a wait for the lock, or the work. */
const shutdown = new AbortController()
/** For the numbers printed at shutdown: when this keeper started, and how long each of its holds lasted. */
const keeperStarted = Date.now()
const holdsMs: number[] = []

/** Resolves `false` instead of rejecting when `signal` aborts first. */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  return sleep(ms, true, { signal }).catch(() => false)
}

/**
 * Works until shutdown or until the lease is lost (its `signal` aborts:
 * the native watchdog could not extend it). Work that writes elsewhere
 * would pass `work` on, so that it stops there too.
 */
async function holdAndWork(handle: LockHandle): Promise<void> {
  const work = AbortSignal.any([handle.signal, shutdown.signal])
  const started = Date.now()
  // The watchdog's extensions, counted by the lock (it extends natively and tells JavaScript nothing unless it fails).
  const extendedBefore = lock.stats().extended
  while (await pause(workMs, work)) {
    log(`Working... [${Math.round((Date.now() - started) / 1000)}s]`)
  }
  holdsMs.push(Date.now() - started)
  if (handle.signal.aborted) {
    log('✗ lease lost: stopped working; competing again')
    return
  }
  log(`Completed | Duration: ${Math.round((Date.now() - started) / 1000)}s | Renewals: ${lock.stats().extended - extendedBefore}`)
  const released = await handle.release().catch(() => false)
  log(released ? 'Lock released' : 'Lock was already gone')
}

/** ` | held by <instance> (<region>)` when a majority agrees on a holder that said who it is. */
async function heldBy(): Promise<string> {
  const info = await lock.inspect(values.lock).catch(() => null)
  const holder = info?.locked ? info.metadata : null
  return holder?.instance ? ` | held by ${holder.instance} (${holder.region ?? 'unknown region'})` : ''
}

async function compete(): Promise<void> {
  console.log('='.repeat(72))
  console.log(`KEEPER ${instance} | Region: ${values.region} | Lock: ${values.lock} | TTL: ${ttlMs} ms`)
  console.log('='.repeat(72))
  while (!shutdown.signal.aborted) {
    log(`Attempting lock | Region: ${values.region}`)
    let handle: LockHandle | null
    try {
      handle = await lock.acquire(values.lock, ttlMs, {
        // Who holds the lock travels with it, for the other keepers to print.
        metadata: { instance, region: values.region },
        // The library extends the lease until release, and aborts handle.signal if it cannot.
        auto_extend: true,
        // Woken at once when the holder releases or its lease runs out.
        wait_ms: retryMs,
        signal: shutdown.signal,
      })
    } catch (error) {
      const e = error as LockError
      if (e.code === 'ABORT_ERR' || e.code === 'ERR_LOCK_CLOSED') return
      log(`✗ ${e.code}: ${e.message}`)
      await pause(retryMs, shutdown.signal)
      continue
    }
    if (handle) {
      log(`✓ lock acquired | Lease: ${handle.value.slice(0, 8)} | validity ${handle.validityMs} ms`)
      await holdAndWork(handle)
    } else {
      log(`✗ lock unavailable${await heldBy()}`)
    }
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (shutdown.signal.aborted) return
    log(`${signal}: shutting down`)
    shutdown.abort()
  })
}

/** The five numbers of the quick reference, once the keeper stopped competing. */
async function printNumbers(): Promise<void> {
  const report = await lock.health().catch(() => null)
  log(`Numbers | ${fiveNumbers(lock.stats(), report, Date.now() - keeperStarted, holdsMs)}`)
}

compete()
  .then(printNumbers)
  .then(() => lock.close())
  .catch(async (error: Error) => {
    console.error(`[${instance}] ${error.message}`)
    process.exitCode = 1
    await lock.close()
  })

// A keeper: a background job of which exactly one instance may run at a time.
// It competes for a named lock, works while it holds it (extending the lease
// as it goes), keeps trying while another instance holds it, takes over when
// the holder dies, and releases on SIGINT/SIGTERM.
//
// Usage: npm run keeper:start -- --instance us-east-1 --region us-east
//   [--lock pricing-oracle-keeper] [--ttl-ms 10000] [--work-ms 2000] [--retry-ms 1000]
// Nodes: REDIS_NODES, else REDIS_INSTANCES, else localhost:6379-6381.

import { hostname } from 'node:os'
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
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const lock = new DistributedLock({ lock_ttl_ms: ttlMs, retry_count: 0 })
let stopping = false
let held: LockHandle | null = null
/** For the numbers printed at shutdown: when this keeper started, and how long each of its holds lasted. */
const keeperStarted = Date.now()
const holdsMs: number[] = []
let heldSince = 0

async function holdAndWork(handle: LockHandle): Promise<void> {
  held = handle
  const started = Date.now()
  heldSince = started
  let renewals = 0
  let lost = false
  // Extend at a third of the TTL, so two extensions can fail before the lease does.
  const keepAlive = setInterval(() => {
    void lock.extend(handle).then((extended) => {
      if (extended) renewals++
      else lost = true
    }, () => {
      lost = true
    })
  }, Math.max(1, Math.floor(ttlMs / 3)))
  try {
    while (!stopping && !lost) {
      await sleep(workMs)
      if (!stopping && !lost) log(`Working... [${Math.round((Date.now() - started) / 1000)}s]`)
    }
  } finally {
    clearInterval(keepAlive)
    holdsMs.push(Date.now() - started)
  }
  if (lost) {
    log('✗ lease lost: stopped working; competing again')
    held = null
    return
  }
  log(`Completed | Duration: ${Math.round((Date.now() - started) / 1000)}s | Renewals: ${renewals}`)
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
  while (!stopping) {
    log(`Attempting lock | Region: ${values.region}`)
    let handle: LockHandle | null
    try {
      // Who holds the lock travels with it, for the other keepers to print.
      handle = await lock.acquire(values.lock, ttlMs, { metadata: { instance, region: values.region } })
    } catch (error) {
      const e = error as LockError
      if (e.code === 'ERR_LOCK_CLOSED') return
      log(`✗ ${e.code}: ${e.message}`)
      await sleep(retryMs)
      continue
    }
    if (handle) {
      log(`✓ lock acquired | Lease: ${handle.value.slice(0, 8)} | validity ${handle.validityMs} ms`)
      await holdAndWork(handle)
    } else {
      log(`✗ lock unavailable${await heldBy()}`)
      await sleep(retryMs)
    }
  }
}

async function shutdown(signal: string): Promise<void> {
  if (stopping) return
  stopping = true
  log(`${signal}: shutting down`)
  if (held) {
    holdsMs.push(Date.now() - heldSince)
    const released = await lock.release(held).catch(() => false)
    log(released ? 'Lock released' : 'Lock was already gone')
  }
  const report = await lock.health().catch(() => null)
  log(`Numbers | ${fiveNumbers(lock.stats(), report, Date.now() - keeperStarted, holdsMs)}`)
  await lock.close()
  process.exit(0)
}

process.on('SIGINT', () => void shutdown('SIGINT'))
process.on('SIGTERM', () => void shutdown('SIGTERM'))

compete().catch((error: Error) => {
  console.error(`[${instance}] ${error.message}`)
  process.exit(1)
})

// Two keepers competing for one lock, with the OpenTelemetry SDK and the
// Prometheus exporter: the lock's metrics are served where Prometheus
// scrapes them, and the five numbers of the quick reference are printed at
// the end.
//
// Usage: npx tsx examples/telemetry.ts [--port 9464] [--seconds 0 (until SIGINT)]
//   [--lock telemetry-keeper] [--ttl-ms 3000] [--work-ms 1500]
// Nodes: REDIS_NODES, else REDIS_INSTANCES, else localhost:6379-6381.
// Needs the packages @opentelemetry/api, @opentelemetry/sdk-metrics and
// @opentelemetry/exporter-prometheus.

import { parseArgs } from 'node:util'

import { PrometheusExporter } from '@opentelemetry/exporter-prometheus'
import { MeterProvider } from '@opentelemetry/sdk-metrics'

import { DistributedLock, type LockError } from '..'
import { fiveNumbers } from './numbers'

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '9464' },
    seconds: { type: 'string', default: '0' },
    lock: { type: 'string', default: 'telemetry-keeper' },
    'ttl-ms': { type: 'string', default: '3000' },
    'work-ms': { type: 'string', default: '1500' },
  },
})
const ttlMs = Number(values['ttl-ms'])
const workMs = Number(values['work-ms'])
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const exporter = new PrometheusExporter({ port: Number(values.port) })
const meterProvider = new MeterProvider({ readers: [exporter] })
const keepers = ['keeper-a', 'keeper-b'].map((name) => ({
  name,
  lock: new DistributedLock({ retry_count: 0, telemetry: { meterProvider } }),
  holdsMs: [] as number[],
}))
const started = Date.now()
let stopping = false

/** Takes the lock when it can, works a while under the watchdog, releases it, rests, and again. */
async function keep(name: string, lock: DistributedLock, holdsMs: number[]): Promise<void> {
  while (!stopping) {
    try {
      const handle = await lock.acquire(values.lock, ttlMs, { auto_extend: true })
      if (handle === null) {
        await sleep(workMs / 5)
        continue
      }
      const heldFrom = Date.now()
      console.log(`[${name}] ✓ lock acquired, working ${workMs} ms`)
      await sleep(workMs)
      await lock.release(handle)
      holdsMs.push(Date.now() - heldFrom)
      await sleep(workMs / 2)
    } catch (error) {
      if ((error as LockError).code === 'ERR_LOCK_CLOSED') return
      console.log(`[${name}] ✗ ${(error as LockError).code}: ${(error as Error).message}`)
      await sleep(workMs)
    }
  }
}

async function stop(): Promise<void> {
  if (stopping) return
  stopping = true
  const report = await keepers[0].lock.health().catch(() => null)
  for (const { name, lock, holdsMs } of keepers) {
    console.log(`[${name}] ${fiveNumbers(lock.stats(), report, Date.now() - started, holdsMs)}`)
    await lock.close()
  }
  await meterProvider.shutdown()
}

console.log(`Metrics: http://localhost:${values.port}${PrometheusExporter.DEFAULT_OPTIONS.endpoint}`)
process.on('SIGINT', () => void stop())
process.on('SIGTERM', () => void stop())
const seconds = Number(values.seconds)
if (seconds > 0) setTimeout(() => void stop(), seconds * 1000)
void Promise.all(keepers.map(({ name, lock, holdsMs }) => keep(name, lock, holdsMs)))

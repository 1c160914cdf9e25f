// The `telemetry` option read by the real OpenTelemetry SDKs: the
// instruments by outcome (contention, a paused majority, an aborted wait, a
// lease lost to a paused majority), hold durations against the time held,
// spans with their parent, attempts and node children (never a password),
// one instance's telemetry seeing only its calls, and the library without
// the package installed.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import diagnostics from 'node:diagnostics_channel'
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, before, describe, it } from 'node:test'

import { context, SpanKind } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { MeterProvider, MetricReader, type HistogramMetricData, type MetricData } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'

import type { DistributedLockOptions, LockHandle } from '..'
import { useCluster } from './helpers/fixture'
import { waitFor } from './helpers/redis'

const ROOT = path.resolve(__dirname, '..')
const PASSWORD = 'telemetry-secret-3141'

/** Reads what the meter provider holds on demand. */
class TestReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

/** A meter provider, a tracer provider and a lock option that uses both. */
function sdk(extra: { resourceAttribute?: boolean } = {}) {
  const reader = new TestReader()
  const meterProvider = new MeterProvider({ readers: [reader] })
  const spans = new InMemorySpanExporter()
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
  const metrics = async (): Promise<MetricData[]> => {
    const { resourceMetrics, errors } = await reader.collect()
    assert.deepEqual(errors, [])
    return resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics)
  }
  return { telemetry: { meterProvider, tracerProvider, ...extra }, metrics, spans, shutdown: () => Promise.all([meterProvider.shutdown(), tracerProvider.shutdown()]) }
}

function metric(all: MetricData[], name: string): MetricData {
  const found = all.find((m) => m.descriptor.name === name)
  assert.ok(found, `metric ${name} among ${all.map((m) => m.descriptor.name).join(', ')}`)
  return found
}

/** The sum of the data points of `name` whose attributes include `attributes`: counts for histograms. */
function total(all: MetricData[], name: string, attributes: Record<string, unknown> = {}): number {
  const found = all.find((m) => m.descriptor.name === name)
  if (found === undefined) return 0
  return found.dataPoints
    .filter((point) => Object.entries(attributes).every(([key, value]) => point.attributes[key] === value))
    .reduce((sum, point) => sum + (typeof point.value === 'number' ? point.value : (point.value as { count: number }).count), 0)
}

describe('telemetry with the OpenTelemetry SDKs', () => {
  const fixture = useCluster(3)
  let shutdowns: (() => Promise<unknown>)[] = []
  const contextManager = new AsyncLocalStorageContextManager()

  before(() => {
    context.setGlobalContextManager(contextManager.enable())
  })
  afterEach(async () => {
    for (const node of fixture.cluster.nodes) {
      try {
        node.resume()
      } catch {
        // not paused
      }
    }
    for (const shutdown of shutdowns.splice(0)) await shutdown()
  })
  const withSdk = (extra?: { resourceAttribute?: boolean }) => {
    const made = sdk(extra)
    shutdowns.push(made.shutdown)
    return made
  }

  it('records acquisitions by outcome: acquired, held, unavailable, aborted; attempts; node durations and health', async () => {
    const { telemetry, metrics } = withSdk()
    const lock = fixture.newLock({ telemetry, command_timeout_ms: 200, retry_count: 0 })
    const handle = (await lock.acquire('otel:outcomes', 5000)) as LockHandle
    assert.equal(await lock.acquire('otel:outcomes', 5000), null)
    const controller = new AbortController()
    const waiting = lock.acquire('otel:outcomes', 5000, { wait_ms: 5000, retry_count: 100, signal: controller.signal })
    controller.abort()
    await assert.rejects(waiting, { code: 'ABORT_ERR' })
    assert.equal(await lock.release(handle), true)
    const [a, b] = fixture.cluster.nodes
    a.pause()
    b.pause()
    await assert.rejects(lock.acquire('otel:down', 5000), { code: 'ERR_QUORUM_UNAVAILABLE' })

    const all = await metrics()
    const duration = metric(all, 'lock.acquire.duration')
    assert.equal(duration.descriptor.unit, 's')
    for (const outcome of ['acquired', 'held', 'aborted', 'unavailable']) {
      assert.equal(total(all, 'lock.acquire.duration', { 'lock.outcome': outcome }), 1, outcome)
    }
    assert.ok(
      duration.dataPoints.every((point) => !('lock.resource' in point.attributes)),
      'no resource names without resourceAttribute',
    )
    // An aborted wait rejects at once, before its attempts are told.
    assert.equal(total(all, 'lock.acquire.attempts'), 3)
    const nodeDuration = metric(all, 'lock.node.duration') as HistogramMetricData
    assert.equal(nodeDuration.descriptor.unit, 's')
    // Only replies that came before each call was decided: at least a majority of the nodes.
    const ports = new Set(nodeDuration.dataPoints.map((point) => point.attributes['server.port']))
    const cluster = fixture.cluster.nodes.map((node) => node.port)
    assert.ok(ports.size >= 2 && [...ports].every((port) => cluster.includes(port as number)), `ports ${[...ports]}`)
    for (const point of nodeDuration.dataPoints) {
      assert.equal(point.attributes['server.address'], '127.0.0.1')
      assert.equal(point.attributes['db.operation.name'], 'EVALSHA')
    }
    const up = metric(all, 'lock.node.up')
    const upByPort = new Map(up.dataPoints.map((point) => [point.attributes['server.port'], point.value]))
    assert.equal(upByPort.get(a.port), 0)
    assert.equal(upByPort.get(b.port), 0)
    assert.equal(upByPort.get(fixture.cluster.nodes[2].port), 1)
    assert.ok(metric(all, 'lock.node.quarantined').dataPoints.every((point) => point.value === 0))
  })

  it('hold durations match the time held, and lock.held goes back to zero', async () => {
    const { telemetry, metrics } = withSdk({ resourceAttribute: true })
    const lock = fixture.newLock({ telemetry })
    const holdMs = 300
    const handle = (await lock.acquire('otel:hold', 5000)) as LockHandle
    const heldFrom = performance.now()
    assert.equal(total(await metrics(), 'lock.held', { 'lock.resource': 'otel:hold' }), 1)
    await new Promise((resolve) => setTimeout(resolve, holdMs))
    const releasing = lock.release(handle)
    const heldMs = performance.now() - heldFrom
    assert.equal(await releasing, true)
    const all = await metrics()
    const hold = metric(all, 'lock.hold.duration') as HistogramMetricData
    assert.equal(hold.descriptor.unit, 's')
    const [point] = hold.dataPoints
    assert.deepEqual(point.attributes, { 'lock.end': 'released', 'lock.resource': 'otel:hold' })
    assert.equal(point.value.count, 1)
    const seconds = point.value.sum!
    // From the acquire's settling to the release's, which takes one round trip more than the timer.
    assert.ok(seconds >= holdMs / 1000 && seconds <= heldMs / 1000 + 0.25, `held ${seconds} s for a ${heldMs} ms hold`)
    assert.equal(total(all, 'lock.held', { 'lock.resource': 'otel:hold' }), 0)
  })

  it('a lease lost to a paused majority: lock.extend{lock.outcome=lost}, a lost hold, and :lost', async () => {
    const { telemetry, metrics } = withSdk()
    const lock = fixture.newLock({ telemetry, command_timeout_ms: 200 })
    const lost: unknown[] = []
    const onLost = (message: unknown) => lost.push(message)
    diagnostics.subscribe('redis-quorum-lock:lost', onLost)
    try {
      const handle = (await lock.acquire('otel:lost', 900, { auto_extend: true })) as LockHandle
      await waitFor('a watchdog extension', async () => total(await metrics(), 'lock.extend', { 'lock.outcome': 'extended', 'lock.auto': true }) >= 1)
      assert.equal(await lock.extend(handle, 900), true, 'and one by the caller')
      const [a, b] = fixture.cluster.nodes
      a.pause()
      b.pause()
      await waitFor('the lease to be lost', () => lost.length === 1)
      assert.equal((lost[0] as { handle: LockHandle }).handle, handle)
      const all = await metrics()
      assert.equal(total(all, 'lock.extend', { 'lock.outcome': 'lost' }), 1)
      assert.equal(total(all, 'lock.extend', { 'lock.outcome': 'lost', 'lock.auto': true }), 1)
      assert.equal(total(all, 'lock.extend', { 'lock.outcome': 'extended', 'lock.auto': false }), 1)
      assert.equal(total(all, 'lock.hold.duration', { 'lock.end': 'lost' }), 1)
      assert.equal(total(all, 'lock.held'), 0)
    } finally {
      diagnostics.unsubscribe('redis-quorum-lock:lost', onLost)
    }
  })

  it('a span per call under the caller\'s span, an event per attempt, a child per node command, no password', async () => {
    const { telemetry, spans } = withSdk()
    const nodes = fixture.cluster.nodes.map((node) => `redis://default:${PASSWORD}@127.0.0.1:${node.port}`)
    for (const node of fixture.cluster.nodes) await node.redis().config('SET', 'requirepass', PASSWORD)
    try {
      const lock = fixture.newLock({ redis_nodes: nodes, telemetry, retry_count: 0 })
      const rival = fixture.newLock({ redis_nodes: nodes, retry_count: 0 })
      const caller = telemetry.tracerProvider.getTracer('caller')
      const handle = await caller.startActiveSpan('job', async (job) => {
        try {
          return (await lock.acquire('otel:span', 5000, { fencing: true })) as LockHandle
        } finally {
          job.end()
        }
      })
      const other = (await rival.acquire('otel:other', 5000)) as LockHandle
      assert.equal(await lock.acquire('otel:span', 5000), null, 'a conflict')
      assert.equal(await lock.release(handle), true)
      await rival.release(other)

      const finished = spans.getFinishedSpans()
      const named = (name: string) => finished.filter((span) => span.name === name)
      const [job] = finished.filter((span) => span.name === 'job')
      assert.ok(job)
      const acquires = named('lock.acquire')
      assert.equal(acquires.length, 2, 'the other instance is not traced')
      const [won, held] = acquires
      assert.equal(won.kind, SpanKind.INTERNAL)
      assert.equal(won.parentSpanContext?.spanId, job.spanContext().spanId)
      assert.equal(won.spanContext().traceId, job.spanContext().traceId)
      assert.equal(won.attributes['lock.outcome'], 'acquired')
      assert.equal(won.attributes['lock.attempts'], 1)
      assert.equal(won.attributes['lock.quorum'], 2)
      assert.deepEqual(won.attributes['lock.resources'], ['otel:span'])
      assert.deepEqual(won.events.map((event) => event.name), ['lock.attempt'])
      assert.equal(held.attributes['lock.outcome'], 'held')
      const [release] = named('lock.release')
      assert.equal(release.attributes['lock.outcome'], 'released')
      const children = (parent: ReadableSpan) => finished.filter((span) => span.parentSpanContext?.spanId === parent.spanContext().spanId)
      for (const parent of [won, held, release]) {
        const commands = children(parent)
        assert.equal(commands.length, 3, `a node span per node under ${parent.name}`)
        for (const command of commands) {
          assert.equal(command.name, 'EVALSHA')
          assert.equal(command.kind, SpanKind.CLIENT)
          assert.equal(command.attributes['db.system.name'], 'redis')
          assert.equal(command.attributes['db.operation.name'], 'EVALSHA')
          assert.equal(command.attributes['server.address'], '127.0.0.1')
        }
        assert.deepEqual(
          commands.map((command) => command.attributes['server.port']).sort(),
          fixture.cluster.nodes.map((node) => node.port).sort(),
        )
      }
      const dump = JSON.stringify(
        finished.map((span) => ({ name: span.name, attributes: span.attributes, events: span.events, status: span.status })),
      )
      assert.ok(!dump.includes(PASSWORD), 'no password in any span')
      console.log('# spans of one acquire:', JSON.stringify([won, ...children(won)].map((span) => ({ name: span.name, kind: span.kind, attributes: span.attributes, events: span.events.map((event) => [event.name, event.attributes]) }))))
    } finally {
      for (const node of fixture.cluster.nodes) await node.redis().config('SET', 'requirepass', '')
    }
  })

  it('a bad telemetry option fails with ERR_INVALID_ARG', () => {
    const options = (telemetry: unknown) => ({ redis_nodes: fixture.cluster.addresses, telemetry }) as DistributedLockOptions
    assert.throws(() => fixture.newLock(options('yes')), { code: 'ERR_INVALID_ARG', message: /telemetry/ })
    assert.throws(() => fixture.newLock(options({ meterProvider: {} })), { code: 'ERR_INVALID_ARG', message: /meterProvider/ })
    assert.throws(() => fixture.newLock(options({ tracer: 1 })), { code: 'ERR_INVALID_ARG', message: /unknown key 'tracer'/ })
    assert.throws(() => fixture.newLock({ redis_nodes: fixture.cluster.addresses, telemtry: true } as DistributedLockOptions), {
      code: 'ERR_INVALID_ARG',
      message: /did you mean 'telemetry'/,
    })
  })

  it('without @opentelemetry/api installed the lock works and telemetry fails saying what to install', async () => {
    // The package's own files, where no node_modules above can see the OpenTelemetry packages.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rql-no-otel-'))
    try {
      const { files } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { files: string[] }
      const native = readdirSync(ROOT).filter((name) => name.endsWith('.node'))
      for (const file of [...files, ...native, 'package.json']) copyFileSync(path.join(ROOT, file), path.join(dir, file))
      const script = `
        const { DistributedLock } = require(${JSON.stringify(dir)})
        const nodes = ${JSON.stringify(fixture.cluster.addresses)}
        ;(async () => {
          let thrown
          try { new DistributedLock({ redis_nodes: nodes, telemetry: true }) } catch (error) { thrown = error }
          const lock = new DistributedLock({ redis_nodes: nodes })
          const handle = await lock.acquire('otel:absent', 5000)
          console.log(JSON.stringify({ code: thrown?.code, message: thrown?.message, acquired: handle !== null, released: await lock.release(handle), acquiredCount: lock.stats().acquired }))
          await lock.close()
        })()`
      const run = spawnSync(process.execPath, ['-e', script], { cwd: dir, encoding: 'utf8', timeout: 30_000, env: { ...process.env, NODE_PATH: '', NODE_OPTIONS: '' } })
      assert.equal(run.status, 0, run.stderr)
      const result = JSON.parse(run.stdout.trim())
      assert.equal(result.code, 'ERR_INVALID_ARG')
      assert.match(result.message, /npm install @opentelemetry\/api/)
      assert.deepEqual([result.acquired, result.released, result.acquiredCount], [true, true, 1])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

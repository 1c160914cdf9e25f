'use strict'

// OpenTelemetry metrics and spans of one DistributedLock, built on its
// diagnostics channels (index.js) and its stats(). Loaded only for a lock
// made with the `telemetry` option, so that `@opentelemetry/api` stays an
// optional peer dependency. The channels are process-wide: an instance's
// telemetry takes only the messages of its own lock.

const diagnostics = require('node:diagnostics_channel')

const { version } = require('./package.json')

const NAME = 'redis-quorum-lock'
/** The command every lock operation runs on a node: its Lua scripts, by digest. */
const NODE_COMMAND = 'EVALSHA'

/** `@opentelemetry/api`, or `undefined` when it cannot be found. */
function loadApi() {
  try {
    return require('@opentelemetry/api')
  } catch (error) {
    if (error?.code === 'MODULE_NOT_FOUND' && String(error.message).includes('@opentelemetry/api')) return undefined
    throw error
  }
}

/** The attributes of node labels seen so far: a lock has a fixed few nodes. */
const servers = new Map()

/** `server.address` and `server.port` of a node label (`host:port`, an IPv6 address in brackets). */
function serverOf(label) {
  let server = servers.get(label)
  if (server === undefined) {
    const colon = label.lastIndexOf(':')
    const host = label.slice(0, colon)
    server = Object.freeze({
      'server.address': host.startsWith('[') ? host.slice(1, -1) : host,
      'server.port': Number(label.slice(colon + 1)),
    })
    servers.set(label, server)
  }
  return server
}

/** The settings of a `telemetry` option, or the message saying what is wrong with it. */
function settingsOf(option) {
  if (option === true) return {}
  if (option === null || typeof option !== 'object' || Array.isArray(option)) {
    return `invalid option 'telemetry': must be true or an object, got ${option === null ? 'null' : typeof option}`
  }
  const { meterProvider, tracerProvider, resourceAttribute, ...unknown } = option
  const extra = Object.keys(unknown)
  if (extra.length > 0) return `invalid option 'telemetry': unknown key '${extra[0]}'`
  if (meterProvider !== undefined && typeof meterProvider?.getMeter !== 'function') {
    return "invalid option 'telemetry.meterProvider': must be a MeterProvider (with getMeter)"
  }
  if (tracerProvider !== undefined && typeof tracerProvider?.getTracer !== 'function') {
    return "invalid option 'telemetry.tracerProvider': must be a TracerProvider (with getTracer)"
  }
  if (resourceAttribute !== undefined && typeof resourceAttribute !== 'boolean') {
    return `invalid option 'telemetry.resourceAttribute': must be a boolean, got ${typeof resourceAttribute}`
  }
  return { meterProvider, tracerProvider, resourceAttribute: resourceAttribute === true }
}

/**
 * Instruments `lock` as `option` says. Returns `{ close() }`, which ends
 * the holds still open as `closed` and stops listening; throws what
 * `invalidArg(message)` makes for a bad option or a missing package.
 */
function instrument(lock, option, invalidArg) {
  const settings = settingsOf(option)
  if (typeof settings === 'string') throw invalidArg(settings)
  const api = loadApi()
  if (api === undefined) {
    throw invalidArg(
      "the 'telemetry' option needs the package @opentelemetry/api, which is not installed: npm install @opentelemetry/api (and an OpenTelemetry SDK to read what it records)",
    )
  }
  const meter = (settings.meterProvider ?? api.metrics.getMeterProvider()).getMeter(NAME, version)
  const tracer = (settings.tracerProvider ?? api.trace.getTracerProvider()).getTracer(NAME, version)

  const acquireDuration = meter.createHistogram('lock.acquire.duration', {
    unit: 's',
    description: 'How long acquire calls took, by outcome: their count is the acquisition rate, `held` the conflicts',
  })
  const acquireAttempts = meter.createHistogram('lock.acquire.attempts', {
    unit: '{attempt}',
    description: 'How many attempts each acquire made',
    advice: { explicitBucketBoundaries: [1, 2, 3, 5, 10, 20, 50] },
  })
  const holdDuration = meter.createHistogram('lock.hold.duration', {
    unit: 's',
    description: 'How long leases were held, from acquire to release, loss, expiry or close',
  })
  const extensions = meter.createCounter('lock.extend', {
    unit: '{extension}',
    description: 'Lease extensions, by outcome and by who asked (the watchdog or the caller)',
  })
  const held = meter.createUpDownCounter('lock.held', { unit: '{lease}', description: 'Leases this instance holds' })
  const nodeDuration = meter.createHistogram('lock.node.duration', {
    unit: 's',
    description: "A node's reply time to the lock's commands",
  })
  const nodeUp = meter.createObservableGauge('lock.node.up', {
    unit: '1',
    description: 'Whether the node answered the last command (1) or not (0)',
  })
  const nodeQuarantined = meter.createObservableGauge('lock.node.quarantined', {
    unit: '1',
    description: "Whether the node's vote does not count yet (restart quarantine)",
  })

  /** Open holds: handle to when it was acquired (performance.now()). */
  const holds = new Map()
  /** Handles the watchdog keeps: their `expiresAt` does not move. */
  const watchdogged = new WeakSet()
  /** The spans and start times of calls under way, by context object. */
  const calls = new WeakMap()

  const resourceAttributes = (resources) =>
    settings.resourceAttribute && Array.isArray(resources) ? { 'lock.resource': resources.join(',') } : {}

  const endHold = (handle, end) => {
    const since = holds.get(handle)
    if (since === undefined) return
    holds.delete(handle)
    held.add(-1, resourceAttributes(handle.resources))
    holdDuration.record((performance.now() - since) / 1000, { 'lock.end': end, ...resourceAttributes(handle.resources) })
  }

  /** Ends as `expired` the holds whose lease ran out without a release (nothing extends them). */
  const sweep = () => {
    const now = Date.now()
    for (const handle of holds.keys()) {
      if (!watchdogged.has(handle) && handle.expiresAt < now) endHold(handle, 'expired')
    }
  }

  const observe = (result) => {
    sweep()
    for (const node of lock.stats().nodes) {
      const server = serverOf(node.node)
      if (node.up !== null) result.observe(nodeUp, node.up ? 1 : 0, server)
      result.observe(nodeQuarantined, node.quarantined ? 1 : 0, server)
    }
  }
  meter.addBatchObservableCallback(observe, [nodeUp, nodeQuarantined])

  /** The node commands of the deciding attempt as child spans of `span`, and their durations. */
  const nodeSpans = (operation, span, votes, endedAt) => {
    const slowest = Math.max(0, ...votes.map((vote) => vote.latencyMs ?? 0))
    const issuedAt = endedAt - slowest
    const parent = api.trace.setSpan(api.context.active(), span)
    for (const vote of votes) {
      const server = serverOf(vote.node)
      const attributes = {
        'db.system.name': 'redis',
        'db.operation.name': NODE_COMMAND,
        ...server,
        'lock.operation': operation,
        'lock.vote': vote.vote,
      }
      const child = tracer.startSpan(
        NODE_COMMAND,
        { kind: api.SpanKind.CLIENT, startTime: issuedAt, attributes },
        parent,
      )
      if (vote.error !== null) child.setStatus({ code: api.SpanStatusCode.ERROR, message: vote.error })
      // Decided at quorum before this node answered: its span ends with the call.
      if (vote.latencyMs === null) {
        child.end(endedAt)
        continue
      }
      child.end(issuedAt + vote.latencyMs)
      nodeDuration.record(vote.latencyMs / 1000, {
        ...server,
        'db.operation.name': NODE_COMMAND,
        'lock.operation': operation,
      })
    }
  }

  // The nodes of a lock never change: its quorum is read once, at its first call.
  let quorum

  /** The handlers of one operation's TracingChannel, for this lock's calls only. */
  const tracing = (operation, finish) => ({
    start(context) {
      if (context.lock !== lock) return
      const attributes = { 'lock.operation': operation }
      if (Array.isArray(context.resources)) attributes['lock.resources'] = context.resources
      if (typeof context.ttlMs === 'number') attributes['lock.ttl_ms'] = context.ttlMs
      const span = tracer.startSpan(`lock.${operation}`, { kind: api.SpanKind.INTERNAL, attributes }, api.context.active())
      calls.set(context, { span, since: performance.now(), startedAt: Date.now() })
    },
    error(context) {
      const call = calls.get(context)
      if (call === undefined) return
      call.span.recordException(context.error)
      call.span.setStatus({ code: api.SpanStatusCode.ERROR, message: String(context.error?.message) })
    },
    asyncEnd(context) {
      const call = calls.get(context)
      if (call === undefined) return
      calls.delete(context)
      const { span, since, startedAt } = call
      const seconds = (performance.now() - since) / 1000
      const endedAt = startedAt + seconds * 1000
      quorum ??= Math.floor(lock.stats().nodes.length / 2) + 1
      span.setAttributes({ 'lock.outcome': context.outcome, 'lock.attempts': context.attempts, 'lock.quorum': quorum })
      for (let attempt = 1; attempt <= context.attempts; attempt++) {
        const deciding = attempt === context.attempts
        const granted = deciding ? context.votes.filter((vote) => vote.vote === 'granted').length : undefined
        span.addEvent('lock.attempt', deciding ? { 'lock.attempt': attempt, 'lock.granted': granted } : { 'lock.attempt': attempt })
      }
      nodeSpans(operation, span, context.votes, endedAt)
      finish(context, seconds)
      span.end(endedAt)
    },
  })

  const subscriptions = [
    [
      'acquire',
      tracing('acquire', (context, seconds) => {
        const attributes = { 'lock.outcome': context.outcome, ...resourceAttributes(context.resources) }
        acquireDuration.record(seconds, attributes)
        if (context.attempts > 0) acquireAttempts.record(context.attempts, attributes)
        if (context.outcome === 'acquired') {
          holds.set(context.handle, performance.now())
          held.add(1, resourceAttributes(context.resources))
        }
      }),
    ],
    [
      'extend',
      tracing('extend', (context) => {
        if (context.outcome === 'error') return
        extensions.add(1, { 'lock.outcome': context.outcome, 'lock.auto': false, ...resourceAttributes(context.resources) })
      }),
    ],
    [
      'release',
      tracing('release', (context) => {
        if (context.outcome !== 'error') endHold(context.handle, context.outcome)
      }),
    ],
  ].map(([operation, handlers]) => {
    const channel = diagnostics.tracingChannel(`${NAME}:${operation}`)
    channel.subscribe(handlers)
    return () => channel.unsubscribe(handlers)
  })

  const onWatchdog = (message) => {
    if (message.lock !== lock) return
    if (message.handle !== undefined) watchdogged.add(message.handle)
    if (!message.extended && !message.lost) return
    extensions.add(1, {
      'lock.outcome': message.extended ? 'extended' : 'lost',
      'lock.auto': true,
      ...resourceAttributes(message.resources),
    })
  }
  const onLost = (message) => {
    if (message.lock === lock) endHold(message.handle, 'lost')
  }
  diagnostics.subscribe(`${NAME}:watchdog`, onWatchdog)
  diagnostics.subscribe(`${NAME}:lost`, onLost)
  subscriptions.push(
    () => diagnostics.unsubscribe(`${NAME}:watchdog`, onWatchdog),
    () => diagnostics.unsubscribe(`${NAME}:lost`, onLost),
    () => meter.removeBatchObservableCallback(observe, [nodeUp, nodeQuarantined]),
  )

  return {
    close() {
      for (const handle of [...holds.keys()]) endHold(handle, 'closed')
      for (const unsubscribe of subscriptions.splice(0)) unsubscribe()
    },
  }
}

module.exports = { instrument }

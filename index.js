'use strict'

// The public facade over the native binding: handles, AbortSignal, and the
// checks that need JavaScript identity (which lock a handle belongs to).
// Every call of the binding returns a promise of a typed result (see
// binding.d.ts); this file turns an acquired lock into a handle.

const diagnostics = require('node:diagnostics_channel')
const { Cancel, LockCore, resolveNodes: resolveNativeNodes } = require('./native.js')

// What the lock does, published where APM tools look (README, Observability).
// Nothing is built for a channel without subscribers: each call checks
// first, and the native side builds the events of its I/O thread only for
// the kinds it was told have subscribers.
const channels = {
  acquire: diagnostics.tracingChannel('redis-quorum-lock:acquire'),
  extend: diagnostics.tracingChannel('redis-quorum-lock:extend'),
  release: diagnostics.tracingChannel('redis-quorum-lock:release'),
  lost: diagnostics.channel('redis-quorum-lock:lost'),
  watchdog: diagnostics.channel('redis-quorum-lock:watchdog'),
  node: diagnostics.channel('redis-quorum-lock:node'),
}

/** How often an idle lock looks whether the watchdog and node channels gained or lost subscribers. */
const GATE_INTERVAL_MS = 1000

/** Auto-extended handles by lock id (unique in the process), for the watchdog's lost-lease events. */
const watched = new Map()

/** Publishes on `:lost` that `handle`'s lease is gone, and why. */
function publishLost(handle, reason) {
  if (channels.lost.hasSubscribers) {
    channels.lost.publish({ lock: handleOwner(handle), handle, resources: handle.resources, reason })
  }
}

const WATCHDOG_LOST =
  'the watchdog could not extend the lease at a majority of the nodes before its validity ran out'
const EXTEND_LOST = 'an extension found the lease gone on a majority of the nodes'

function lockError(code, message) {
  const error = new Error(message)
  error.code = code
  return error
}

function invalidArg(message) {
  return lockError('ERR_INVALID_ARG', message)
}

function abortError(signal) {
  const error = lockError('ABORT_ERR', 'the wait for the lock was aborted')
  error.name = 'AbortError'
  error.cause = signal.reason
  return error
}

/** `options` as the native side reads them: `telemetry` is the facade's own, and may hold SDK objects. */
function withoutTelemetry(options) {
  if (options === null || typeof options !== 'object' || !Object.hasOwn(options, 'telemetry')) return options
  const { telemetry: _telemetry, ...rest } = options
  return rest
}

/** `options` with auto_extend on, in whichever spelling; anything but an object is left for acquire to reject. */
function withAutoExtend(options) {
  if (options === undefined) return { auto_extend: true }
  if (options === null || typeof options !== 'object') return options
  const { auto_extend: _snake, autoExtend: _camel, ...rest } = options
  return { ...rest, auto_extend: true }
}

/** Starts a native call; a synchronous throw (a bad argument) becomes the rejection. */
function call(start) {
  try {
    return start()
  } catch (error) {
    return Promise.reject(error)
  }
}

// Credentials providers: the native side reads the options as plain values,
// so the lock's `credentials` function and each node object's are handed to
// it apart, the nodes' by index, each wrapped to return a promise.

/** The most nodes a lock takes: a longer list is refused from its length, unread. */
const MAX_NODES = 15

/** `provider` as the native side calls it: a promise that always resolves, to `{ value }` or to why it failed. */
function settledProvider(provider) {
  return () =>
    Promise.resolve()
      .then(provider)
      .then(
        (value) => ({ value }),
        (error) => (error instanceof Error ? { error: String(error.message) } : { thrown: error === null ? 'null' : typeof error }),
      )
}

/** The credentials functions of `options`: the lock's, and those of the `redis_nodes` entries by index. */
function providersOf(options) {
  const found = { lock: undefined, nodes: [] }
  if (options === null || typeof options !== 'object') return found
  if (typeof options.credentials === 'function') found.lock = options.credentials
  for (const nodes of [options.redis_nodes, options.redisNodes]) {
    if (!Array.isArray(nodes) || nodes.length > MAX_NODES) continue
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i]
      if (node !== null && typeof node === 'object' && typeof node.credentials === 'function') found.nodes[i] = node.credentials
    }
  }
  return found
}

/** The nodes a lock with `options` would use; a node with a credentials provider carries it as `credentials`. */
function resolveNodes(options) {
  const { lock, nodes } = providersOf(options)
  return resolveNativeNodes(options).map((node, i) => {
    const provider = nodes[i] ?? lock
    return provider === undefined ? node : { ...node, credentials: () => Promise.resolve().then(provider) }
  })
}

let handleOwner
let handleId
let setValidity
let loseHandle

/** A lock this process holds; see index.d.ts. */
class LockHandle {
  #lock
  #id
  #controller = null
  #lost = false

  static {
    handleOwner = (handle) => (handle !== null && typeof handle === 'object' && #id in handle ? handle.#lock : undefined)
    handleId = (handle) => handle.#id
    setValidity = (handle, validity) => {
      handle.validityMs = validity.ms
      handle.expiresAt = validity.expiresAt
    }
    loseHandle = (handle) => {
      if (handle.#lost) return
      handle.#lost = true
      handle.#controller?.abort(LockHandle.#lostReason(handle))
    }
  }

  static #lostReason(handle) {
    return lockError('ERR_LOCK_LOST', `the lease of '${handle.resource}' was lost: another owner may hold it now`)
  }

  /** `acquired` is the native `Acquired`. */
  constructor(lock, acquired, resources) {
    this.#lock = lock
    this.#id = acquired.id
    this.resources = resources
    this.value = acquired.value
    this.validityMs = acquired.validityMs
    this.expiresAt = acquired.expiresAt
    this.attempts = acquired.attempts
    this.fencingToken = acquired.fencingToken
  }

  get resource() {
    return this.resources[0]
  }

  /** Aborted, with an ERR_LOCK_LOST reason, once the lease is known lost; made on first use. */
  get signal() {
    if (this.#controller === null) {
      this.#controller = new AbortController()
      if (this.#lost) this.#controller.abort(LockHandle.#lostReason(this))
    }
    return this.#controller.signal
  }

  extend(ttlMs) {
    return this.#lock.extend(this, ttlMs)
  }

  release() {
    return this.#lock.release(this)
  }

  async [Symbol.asyncDispose]() {
    try {
      await this.#lock.release(this)
    } catch (error) {
      // close() released it already.
      if (error.code !== 'ERR_LOCK_CLOSED') throw error
    }
  }
}

/**
 * For the libraries built on this one, not part of the public API: acquire,
 * extend and release resolving `{ handle | extended | released, attempts,
 * votes }`, where `votes` says what each node answered in the deciding
 * attempt (binding.d.ts `NodeVote`); a rejection carries `attempts` and
 * `votes` as well.
 */
const decided = {}

/** Whether anyone listens to the TracingChannel `channel` (its own `hasSubscribers` is newer than Node 20.0). */
function traced(channel) {
  return (
    channel.start.hasSubscribers ||
    channel.end.hasSubscribers ||
    channel.asyncStart.hasSubscribers ||
    channel.asyncEnd.hasSubscribers ||
    channel.error.hasSubscribers
  )
}

/**
 * Runs `start(onDecided)` traced on `channel` with `context`, which is told
 * the decision, then `settled(result)` or, for a rejection, the outcome
 * `failed(error)`.
 */
function trace(channel, context, start, settled, failed) {
  return channel.tracePromise(
    () =>
      start((decision) => {
        context.attempts = decision.attempts
        context.votes = decision.votes
      }).then(
        (result) => {
          settled(result)
          return result
        },
        (error) => {
          context.outcome = failed(error)
          throw error
        },
      ),
    context,
  )
}

/** The outcome of an acquire that failed with `error`. */
function failedOutcome(error) {
  if (error?.code === 'ERR_QUORUM_UNAVAILABLE') return 'unavailable'
  if (error?.code === 'ABORT_ERR') return 'aborted'
  return 'error'
}

/** Runs `start(onDecided)` and adds the decision it is told to the result `shape` makes, or to the error. */
function withDecision(start, shape) {
  let decision
  return start((told) => {
    decision = told
  }).then(
    (result) => ({ ...shape(result), ...decision }),
    (error) => {
      throw Object.assign(error, decision)
    },
  )
}

/** A Redlock quorum lock over independent Redis nodes; see index.d.ts. */
class DistributedLock {
  #core
  #closing = null
  /** The event kinds the native side builds: 1 watchdog, 2 node. */
  #gate = 0
  #gateTimer
  /** What the `telemetry` option made, if given: see telemetry.js. */
  #telemetry = null

  static {
    decided.acquire = (lock, resource, ttlMs, options) =>
      withDecision((onDecided) => lock.#acquire(resource, ttlMs, options, onDecided), (handle) => ({ handle }))
    decided.extend = (lock, handle, ttlMs) =>
      withDecision((onDecided) => lock.#extend(handle, ttlMs, onDecided), (extended) => ({ extended }))
    decided.release = (lock, handle) => withDecision((onDecided) => lock.#release(handle, onDecided), (released) => ({ released }))
  }

  constructor(options) {
    const telemetry = options !== null && typeof options === 'object' ? options.telemetry : undefined
    const { lock, nodes } = providersOf(options)
    // The native side keeps this function for as long as it lives: it must
    // not keep the instance alive.
    const self = new WeakRef(this)
    const told = (ids, events) => self.deref()?.#told(ids, events)
    this.#core = new LockCore(
      withoutTelemetry(options),
      told,
      lock && settledProvider(lock),
      Array.from(nodes, (node) => node && settledProvider(node)),
    )
    // Like `told`, the timer holds the instance weakly, and ends with it.
    const gateTimer = setInterval(() => {
      const live = self.deref()
      if (live === undefined) clearInterval(gateTimer)
      else live.#regate()
    }, GATE_INTERVAL_MS)
    gateTimer.unref()
    this.#gateTimer = gateTimer
    if (telemetry !== undefined && telemetry !== false) {
      try {
        this.#telemetry = require('./telemetry.js').instrument(this, telemetry, invalidArg)
      } catch (error) {
        clearInterval(this.#gateTimer)
        throw error
      }
    }
    this.#regate()
  }

  /** Tells the native side which event kinds have subscribers, when that changed. */
  #regate() {
    const gate = (channels.watchdog.hasSubscribers ? 1 : 0) | (channels.node.hasSubscribers ? 2 : 0)
    if (gate !== this.#gate) {
      this.#gate = gate
      this.#core.observe((gate & 1) !== 0, (gate & 2) !== 0)
    }
  }

  /** What the native side tells: the auto-extended locks the watchdog lost, and the events asked for. */
  #told(ids, events) {
    for (const event of events) {
      if (event.lock !== null) {
        if (channels.watchdog.hasSubscribers) {
          const handle = watched.get(event.lock)
          channels.watchdog.publish({
            lock: this,
            handle,
            resources: handle?.resources,
            extended: event.extended,
            lost: event.lost,
            validityMs: event.validityMs,
            granted: event.granted,
          })
        }
      } else if (channels.node.hasSubscribers) {
        channels.node.publish({ lock: this, node: event.node, change: event.change, error: event.error })
      }
    }
    for (const id of ids) {
      const handle = watched.get(id)
      watched.delete(id)
      if (handle !== undefined) {
        loseHandle(handle)
        publishLost(handle, WATCHDOG_LOST)
      }
    }
  }

  acquire(resource, ttlMs, options) {
    this.#regate()
    if (!traced(channels.acquire)) return this.#acquire(resource, ttlMs, options, undefined)
    const resources = typeof resource === 'string' ? [resource] : resource
    const context = { lock: this, resources, ttlMs, attempts: 0, votes: [], outcome: undefined, handle: null, fencingToken: null }
    return trace(
      channels.acquire,
      context,
      (onDecided) => this.#acquire(resource, ttlMs, options, onDecided),
      (handle) => {
        context.outcome = handle === null ? 'held' : 'acquired'
        context.handle = handle
        context.fencingToken = handle?.fencingToken ?? null
      },
      failedOutcome,
    )
  }

  /** `onDecided`, when given, is told what decided the call. */
  #acquire(resource, ttlMs, options, onDecided) {
    let signal
    if (options !== null && typeof options === 'object' && options.signal !== undefined) {
      ;({ signal, ...options } = options)
      if (!(signal instanceof AbortSignal)) {
        return Promise.reject(invalidArg(`invalid option 'signal': must be an AbortSignal, got ${typeof signal}`))
      }
      if (signal.aborted) return Promise.reject(abortError(signal))
    }
    const cancel = signal === undefined ? undefined : new Cancel()
    let acquiring
    try {
      acquiring = this.#core.acquire(resource, ttlMs, options, cancel, onDecided)
    } catch (error) {
      return Promise.reject(error)
    }
    // Read only now: the binding has checked the resources' number and size.
    const resources = typeof resource === 'string' ? [resource] : Array.from(resource)
    const watch = options != null && (options.auto_extend === true || options.autoExtend === true)
    const settle = (acquired) => {
      if (acquired === null) return null
      const handle = new LockHandle(this, acquired, resources)
      if (watch) watched.set(acquired.id, handle)
      return handle
    }
    if (signal === undefined) return acquiring.then(settle)
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        cancel.abort()
        reject(abortError(signal))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      acquiring.then(
        (acquired) => {
          signal.removeEventListener('abort', onAbort)
          if (!signal.aborted) return resolve(settle(acquired))
          // The caller gave up waiting; a lock won meanwhile is nobody's.
          if (acquired !== null) {
            call(() => this.#core.release(acquired.id)).catch(() => {
              // closed meanwhile: close released it
            })
          }
        },
        (error) => {
          signal.removeEventListener('abort', onAbort)
          reject(error)
        },
      )
    })
  }

  async using(resource, ...args) {
    const routine = args.pop()
    if (typeof routine !== 'function') {
      throw invalidArg(`using() needs a routine as its last argument, got ${routine === null ? 'null' : typeof routine}`)
    }
    const [ttlMs, options] = args
    const handle = await this.acquire(resource, ttlMs, withAutoExtend(options))
    if (handle === null) {
      throw lockError('ERR_LOCK_NOT_ACQUIRED', `could not acquire ${JSON.stringify(resource)}: another owner holds it`)
    }
    try {
      return await routine(handle.signal, handle)
    } finally {
      await handle[Symbol.asyncDispose]()
    }
  }

  extend(handle, ttlMs) {
    this.#regate()
    if (!traced(channels.extend)) return this.#extend(handle, ttlMs, undefined)
    const context = { lock: this, handle, resources: handle?.resources, ttlMs, attempts: 0, votes: [], outcome: undefined }
    return trace(
      channels.extend,
      context,
      (onDecided) => this.#extend(handle, ttlMs, onDecided),
      (extended) => {
        context.outcome = extended ? 'extended' : 'lost'
      },
      () => 'error',
    )
  }

  #extend(handle, ttlMs, onDecided) {
    const id = this.#ownId(handle)
    if (typeof id !== 'bigint') return Promise.reject(id)
    return call(() => this.#core.extend(id, ttlMs, onDecided)).then((validity) => {
      if (validity === null) {
        watched.delete(id)
        loseHandle(handle)
        publishLost(handle, EXTEND_LOST)
        return false
      }
      setValidity(handle, validity)
      return true
    })
  }

  release(handle) {
    this.#regate()
    if (!traced(channels.release)) return this.#release(handle, undefined)
    const context = { lock: this, handle, resources: handle?.resources, attempts: 0, votes: [], outcome: undefined }
    return trace(
      channels.release,
      context,
      (onDecided) => this.#release(handle, onDecided),
      (released) => {
        context.outcome = released ? 'released' : 'expired'
      },
      () => 'error',
    )
  }

  #release(handle, onDecided) {
    const id = this.#ownId(handle)
    if (typeof id !== 'bigint') return Promise.reject(id)
    watched.delete(id)
    return call(() => this.#core.release(id, onDecided))
  }

  inspect(resource) {
    return call(() => this.#core.inspect(resource))
  }

  health(options) {
    return call(() => this.#core.health(options))
  }

  stats() {
    return this.#core.stats()
  }

  close() {
    if (this.#closing === null) {
      clearInterval(this.#gateTimer)
      this.#closing = call(() => this.#core.close()).then(() => {
        for (const [id, handle] of watched) if (handleOwner(handle) === this) watched.delete(id)
        this.#telemetry?.close()
      })
    }
    return this.#closing
  }

  /** The handle's lock id, or the error to reject with. */
  #ownId(handle) {
    const owner = handleOwner(handle)
    if (owner === undefined) {
      return invalidArg(
        `handle must be a LockHandle returned by acquire(), got ${handle === null ? 'null' : typeof handle}`,
      )
    }
    if (owner !== this) {
      return invalidArg('handle belongs to another DistributedLock instance; release it through the lock that acquired it')
    }
    return handleId(handle)
  }
}

module.exports = { DistributedLock, LockHandle, resolveNodes }
Object.defineProperty(module.exports, Symbol.for('redis-quorum-lock.decided'), { value: decided })

'use strict'

// The public facade over the native binding: promises, handles and argument
// checks that need JavaScript identity. The native side knows request ids only.

const { LockCore, resolveNodes: resolveNativeNodes } = require('./native.js')

// Layout of the flat result array the native side delivers (see
// src/binding/completion.rs): id, kind, five numbers, one value. An acquire's
// fifth number is its fencing token instead, as a decimal string, when it has one.
const SLOTS = 8
const ACQUIRED = 0
const NOT_ACQUIRED = 1
const EXTENDED = 2
const RELEASED = 3
const CLOSED = 4
const FAILED = 5
const LOST = 6
const REPORT = 7

/** Requests in flight across every lock of this process, by request id. */
const pending = new Map()
/** Auto-extended handles by lock id (unique in the process), for the watchdog's lost-lease events. */
const watched = new Map()
let lastRequest = 0

function nextRequest() {
  lastRequest = (lastRequest + 1) >>> 0
  return lastRequest
}

function deliver(batch) {
  for (let i = 0; i < batch.length; i += SLOTS) {
    const kind = batch[i + 1]
    if (kind === LOST) {
      const handle = watched.get(batch[i + 2])
      watched.delete(batch[i + 2])
      if (handle !== undefined) loseHandle(handle)
      continue
    }
    const request = pending.get(batch[i])
    if (request === undefined) continue
    pending.delete(batch[i])
    if (request.aborted) {
      // The caller gave up waiting; a lock won meanwhile is nobody's.
      if (kind === ACQUIRED) {
        try {
          request.core.release(nextRequest(), batch[i + 2])
        } catch {
          // closed meanwhile: close released it
        }
      }
      continue
    }
    if (kind === FAILED) {
      request.reject(batch[i + 7])
    } else if (kind === ACQUIRED) {
      const token = typeof batch[i + 6] === 'string' ? BigInt(batch[i + 6]) : null
      const handle = new LockHandle(request.lock, batch[i + 2], request.resources, batch[i + 7], batch[i + 3], batch[i + 4], batch[i + 5], token)
      if (request.watch) watched.set(batch[i + 2], handle)
      request.resolve(handle)
    } else if (kind === NOT_ACQUIRED) {
      request.resolve(null)
    } else if (kind === EXTENDED) {
      const extended = batch[i + 2] === 1
      if (extended) {
        setValidity(request.handle, batch[i + 3], batch[i + 4])
      } else {
        watched.delete(handleId(request.handle))
        loseHandle(request.handle)
      }
      request.resolve(extended)
    } else if (kind === RELEASED) {
      request.resolve(batch[i + 2] === 1)
    } else if (kind === CLOSED) {
      request.resolve(undefined)
    } else if (kind === REPORT) {
      request.resolve(withParsedMetadata(batch[i + 7]))
    }
  }
}

/** An inspect() report with each metadata JSON text made an object; a foreign value that only looks like ours gives null. */
function withParsedMetadata(report) {
  if (!('nodes' in report) || !('locked' in report)) return report
  const parse = (text) => {
    if (text == null) return null
    try {
      return JSON.parse(text)
    } catch {
      return null
    }
  }
  report.metadata = parse(report.metadata)
  for (const node of report.nodes) node.metadata = parse(node.metadata)
  return report
}

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

/** `options` with auto_extend on, in whichever spelling; anything but an object is left for acquire to reject. */
function withAutoExtend(options) {
  if (options === undefined) return { auto_extend: true }
  if (options === null || typeof options !== 'object') return options
  const { auto_extend: _snake, autoExtend: _camel, ...rest } = options
  return { ...rest, auto_extend: true }
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
    setValidity = (handle, validityMs, expiresAt) => {
      handle.validityMs = validityMs
      handle.expiresAt = expiresAt
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

  constructor(lock, id, resources, value, validityMs, expiresAt, attempts, fencingToken) {
    this.#lock = lock
    this.#id = id
    this.resources = resources
    this.value = value
    this.validityMs = validityMs
    this.expiresAt = expiresAt
    this.attempts = attempts
    this.fencingToken = fencingToken
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

/** A Redlock quorum lock over independent Redis nodes; see index.d.ts. */
class DistributedLock {
  #core
  #closing = null

  constructor(options) {
    const { lock, nodes } = providersOf(options)
    this.#core = new LockCore(options, deliver, lock && settledProvider(lock), Array.from(nodes, (node) => node && settledProvider(node)))
  }

  acquire(resource, ttlMs, options) {
    let signal
    if (options !== null && typeof options === 'object' && options.signal !== undefined) {
      ;({ signal, ...options } = options)
      if (!(signal instanceof AbortSignal)) {
        return Promise.reject(invalidArg(`invalid option 'signal': must be an AbortSignal, got ${typeof signal}`))
      }
      if (signal.aborted) return Promise.reject(abortError(signal))
    }
    const request = nextRequest()
    try {
      this.#core.acquire(request, resource, ttlMs, options, signal !== undefined)
    } catch (error) {
      return Promise.reject(error)
    }
    const resources = typeof resource === 'string' ? [resource] : Array.from(resource)
    const watch = options != null && (options.auto_extend === true || options.autoExtend === true)
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, lock: this, resources, handle: null, watch, core: this.#core, aborted: false }
      pending.set(request, entry)
      if (signal === undefined) return
      const onAbort = () => {
        entry.aborted = true
        this.#core.abort(request)
        reject(abortError(signal))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      entry.resolve = (handle) => {
        signal.removeEventListener('abort', onAbort)
        resolve(handle)
      }
      entry.reject = (error) => {
        signal.removeEventListener('abort', onAbort)
        reject(error)
      }
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
    const id = this.#ownId(handle)
    if (typeof id !== 'number') return Promise.reject(id)
    return this.#call((request) => this.#core.extend(request, id, ttlMs), handle)
  }

  release(handle) {
    const id = this.#ownId(handle)
    if (typeof id !== 'number') return Promise.reject(id)
    watched.delete(id)
    return this.#call((request) => this.#core.release(request, id), handle)
  }

  inspect(resource) {
    return this.#call((request) => this.#core.inspect(request, resource))
  }

  health() {
    return this.#call((request) => this.#core.health(request))
  }

  /** Starts one native call under a new request id; its result settles the promise. */
  #call(start, handle = null) {
    const request = nextRequest()
    try {
      start(request)
    } catch (error) {
      return Promise.reject(error)
    }
    return new Promise((resolve, reject) => {
      pending.set(request, { resolve, reject, lock: this, resources: null, handle })
    })
  }

  close() {
    if (this.#closing === null) {
      const request = nextRequest()
      this.#core.close(request)
      this.#closing = new Promise((resolve, reject) => {
        pending.set(request, { resolve, reject, lock: this, resources: null, handle: null })
      })
    }
    return this.#closing
  }

  /** The handle's registry id, or the error to reject with. */
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

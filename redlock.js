'use strict'

// `redis-quorum-lock/redlock`: the API of npm `redlock@5.0.0-beta.2` (its
// README and typings) on this package's DistributedLock, so code written for
// redlock runs with only its import changed. The caller's ioredis clients
// give the nodes' addresses and credentials; locking goes through the native
// engine, with its guarantees: quorum decided early, failed attempts cleaned
// up, no expired lock returned, `using` kept alive by the native watchdog.
// redlock's attempts, retries, delays and per-node stats are shaped here.

const { EventEmitter } = require('node:events')

const core = require('./index.js')

const { DistributedLock } = core
/** The internal entry point that tells what each node answered; see index.js. */
const decided = core[Symbol.for('redis-quorum-lock.decided')]

/** redlock's defaults. */
const DEFAULTS = Object.freeze({
  driftFactor: 0.01,
  retryCount: 10,
  retryDelay: 200,
  retryJitter: 100,
  automaticExtensionThreshold: 500,
})
const CALL_SETTINGS = Object.keys(DEFAULTS)
/** Settings of this library's own, given to the constructor only. */
const LOCK_SETTINGS = ['restartQuarantine', 'maxTtlMs']
/** The engine's bound on delays: longer is almost certainly seconds given as milliseconds. */
const MAX_DELAY_MS = 600_000
const QUORUM_FAILED = 'The operation was unable to achieve a quorum during its retry window.'
const NOT_INTEGER = 'Duration must be an integer value in milliseconds.'

/** The vote of a node that holds another value for a resource (or, for extend and release, not this lock's). */
class ResourceLockedError extends Error {
  constructor(message) {
    super(message)
    this.name = 'ResourceLockedError'
  }
}

/** An operation that did not reach a quorum within its attempts. */
class ExecutionError extends Error {
  constructor(message, attempts) {
    super(message)
    this.name = 'ExecutionError'
    this.attempts = attempts
  }
}

/** Each Lock made by acquire or extend, with the Redlock and the native handle behind it. */
const held = new WeakMap()

/** A held lock, as redlock returns it; `release()` and `extend()` go through its Redlock. */
class Lock {
  constructor(redlock, resources, value, attempts, expiration) {
    this.redlock = redlock
    this.resources = resources
    this.value = value
    this.attempts = attempts
    this.expiration = expiration
  }

  async release() {
    return this.redlock.release(this)
  }

  async extend(duration) {
    return this.redlock.extend(this, duration)
  }
}

// ---------------------------------------------------------------------------
// Per-node votes. The engine tells what each node answered in the attempt
// that decided a call (the internal `decided` entry point of index.js). A
// node whose reply had not come when the quorum decided the call ('pending')
// is read back with inspect() instead, off the caller's path (the connection
// to a node keeps the order of commands, so the read sees the call's own
// write there). attemptOnce and votesOf are the only code that knows how;
// `size` is the lock's number of nodes.
//
//   attemptOnce(lock, size, resources, duration, autoExtend): one acquire
//     attempt. Resolves { handle, callStart, votes }: handle a LockHandle,
//     or null when the attempt failed (another owner holds a resource, or
//     too few nodes answered); callStart the epoch ms taken before the call;
//     votes() resolves the votes (call it at once, or not at all).
//     Rejects only with errors that are no vote: ERR_INVALID_ARG, ERR_LOCK_CLOSED.
//   votesOf(lock, size, resources, decided, { mine, absent }): the votes
//     after any call (extend and release use it directly). Resolves, never
//     rejects, one NodeVote per node in the order of the lock's nodes:
//     { vote: 'for' } | { vote: 'locked' } (another value is there, or not
//     this lock's) | { vote: 'failed', message }.
//
// For a pending node, what a read cannot tell apart is decided by `absent`
// (the vote of a node that holds nothing for the resources): after a won
// acquire such a node refused a key that has expired since; after a lost one
// it granted and was cleaned up; after extend it did not hold the lock; after
// release it deleted it, or found it gone. A key written or deleted by
// someone else between the call and the read is read as theirs.
// ---------------------------------------------------------------------------

async function attemptOnce(lock, size, resources, duration, autoExtend) {
  const callStart = Date.now()
  try {
    const { handle, votes } = await decided.acquire(lock, resources, duration, { retry_count: 0, auto_extend: autoExtend })
    const reading = handle === null ? { mine: null, absent: 'for' } : { mine: handle.value, absent: 'locked' }
    return { handle, callStart, votes: () => votesOf(lock, size, resources, votes, reading) }
  } catch (error) {
    if (error?.code !== 'ERR_QUORUM_UNAVAILABLE') throw error
    return { handle: null, callStart, votes: () => votesOf(lock, size, resources, error.votes, { mine: null, absent: 'for' }) }
  }
}

/** What the engine's vote of a node says in redlock's terms; null while it was pending. */
function voteOf(nodeVote) {
  if (nodeVote.vote === 'granted') return { vote: 'for' }
  if (nodeVote.vote === 'refused') return { vote: 'locked' }
  if (nodeVote.vote === 'failed') return { vote: 'failed', message: nodeVote.error }
  return null
}

/**
 * The vote of each of the `size` nodes: the engine's `votes` of the call,
 * and for each node that was pending (every node, without votes), what it
 * holds for `resources` now. `mine`: the value that makes a read node's vote
 * 'for' (null: none does).
 */
async function votesOf(lock, size, resources, votes, { mine, absent }) {
  // A call decided without asking the nodes (a handle released already) has no votes.
  const known = votes?.length === size ? votes.map(voteOf) : Array.from({ length: size }, () => null)
  if (known.every((vote) => vote !== null)) return known
  let reports
  try {
    reports = await Promise.all(resources.map((resource) => lock.inspect(resource)))
  } catch (error) {
    return known.map((vote) => vote ?? { vote: 'failed', message: `its vote could not be read: ${error.message}` })
  }
  return known.map((vote, i) => {
    if (vote !== null) return vote
    const seen = reports.map((report) => report.nodes[i])
    const errored = seen.find((node) => node.error !== null)
    if (errored !== undefined) return { vote: 'failed', message: errored.error }
    if (seen[0].quarantineMs > 0) {
      return {
        vote: 'failed',
        message: `restarted without durable persistence less than max_ttl_ms ago (restart quarantine): its vote counts again in ${seen[0].quarantineMs} ms`,
      }
    }
    if (mine !== null && seen.every((node) => node.holder === mine)) return { vote: 'for' }
    if (seen.some((node) => node.held)) return { vote: 'locked' }
    return { vote: absent }
  })
}

// ---------------------------------------------------------------------------

function invalidArg(message) {
  const error = new Error(message)
  error.code = 'ERR_INVALID_ARG'
  return error
}

function checkCall(resources, duration) {
  if (!Array.isArray(resources)) throw invalidArg(`resources must be an array of strings, got ${resources === null ? 'null' : typeof resources}`)
  checkDuration(duration)
}

function checkDuration(duration) {
  if (Math.floor(duration) !== duration) throw new Error(NOT_INTEGER)
}

function checkNumber(where, key, value, min, max, integer = false) {
  if (typeof value !== 'number' || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min || value > max) {
    const shown = typeof value === 'number' ? String(value) : typeof value
    throw invalidArg(`${where}: setting '${key}' must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${shown}`)
  }
}

/**
 * `settings` checked: only the keys in `allowed`, each of its type and
 * range; an undefined value counts as not given, as in redlock.
 */
function checkSettings(where, settings, allowed) {
  if (settings === undefined || settings === null) return {}
  if (typeof settings !== 'object') throw invalidArg(`${where}: settings must be an object, got ${typeof settings}`)
  const given = {}
  for (const [key, value] of Object.entries(settings)) {
    if (!allowed.includes(key)) {
      throw invalidArg(`${where}: unknown setting '${key}'; the settings are ${allowed.map((name) => `'${name}'`).join(', ')}`)
    }
    if (value === undefined) continue
    if (key === 'driftFactor') checkNumber(where, key, value, 0, 0.5)
    else if (key === 'retryCount') checkNumber(where, key, value, -1, 2 ** 31 - 1, true)
    else if (key === 'retryDelay' || key === 'retryJitter') checkNumber(where, key, value, 0, MAX_DELAY_MS)
    else if (key === 'automaticExtensionThreshold') checkNumber(where, key, value, 0, 2 ** 31 - 1)
    else if (key === 'restartQuarantine' && typeof value !== 'boolean') {
      throw invalidArg(`${where}: setting 'restartQuarantine' must be a boolean, got ${typeof value}`)
    }
    given[key] = value
  }
  return given
}

/** redlock's wait before the next attempt: the delay plus or minus up to the jitter, never negative. */
function retryPause(settings) {
  const ms = Math.max(0, settings.retryDelay + Math.floor((Math.random() * 2 - 1) * settings.retryJitter))
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The DistributedLock nodes and key prefix that the ioredis clients point at. */
function nodesOf(clients) {
  const nodes = []
  const prefixes = new Set()
  for (const client of clients) {
    if (client?.isCluster === true) {
      throw invalidArg(
        'an ioredis Cluster cannot be a Redlock member here: the quorum needs independent nodes, and a cluster is one ' +
          'replicated system whose failover can lose a lock; give one ioredis Redis client per independent node',
      )
    }
    const options = client?.options
    if (options === null || typeof options !== 'object' || typeof options.host !== 'string' || typeof options.port !== 'number') {
      throw invalidArg('every client must be an ioredis Redis client: its host and port are read from client.options')
    }
    if (Array.isArray(options.sentinels) && options.sentinels.length > 0) {
      throw invalidArg('a client that finds its node through Sentinel is not supported: give a client per independent node by host and port')
    }
    if (typeof options.path === 'string' && options.path !== '') {
      throw invalidArg(`a client on a Unix socket is not supported: give the node's host and port`)
    }
    const node = { host: options.host, port: options.port, db: Number(options.db ?? 0), tls: Boolean(options.tls) }
    if (typeof options.username === 'string' && options.username !== '') node.username = options.username
    if (typeof options.password === 'string' && options.password !== '') node.password = options.password
    nodes.push(node)
    prefixes.add(options.keyPrefix ?? '')
  }
  if (prefixes.size > 1) {
    throw invalidArg(`the clients have different keyPrefix options (${[...prefixes].map((p) => JSON.stringify(p)).join(', ')}): one lock uses one key for a resource on every node`)
  }
  return { nodes, keyPrefix: [...prefixes][0] ?? '' }
}

/**
 * A Redlock over independent Redis nodes, given as one ioredis client per
 * node; see redlock.d.ts. The clients are read, not used: locking goes
 * through one DistributedLock with its own connections.
 */
class Redlock extends EventEmitter {
  #lock
  #members
  /** The lock's own drift allowance, which its validities already include. */
  #driftFactor

  constructor(clients, settings = {}, scripts = undefined) {
    super()
    // redlock emits a vote against on 'error' even when the operation
    // succeeds; without a listener that would throw.
    this.on('error', () => {})
    if (scripts !== undefined) {
      throw invalidArg('custom scripts are not supported: this library writes its locks with its own scripts')
    }
    this.clients = new Set(clients)
    if (this.clients.size === 0) throw new Error('Redlock must be instantiated with at least one redis client.')
    const given = checkSettings('new Redlock()', settings, [...CALL_SETTINGS, ...LOCK_SETTINGS])
    this.settings = {}
    for (const key of CALL_SETTINGS) this.settings[key] = given[key] ?? DEFAULTS[key]
    this.#members = [...this.clients]
    this.#driftFactor = this.settings.driftFactor
    const { nodes, keyPrefix } = nodesOf(this.#members)
    this.#lock = new DistributedLock({
      redis_nodes: nodes,
      key_prefix: keyPrefix,
      drift_factor: this.#driftFactor,
      retry_count: 0,
      // In their camelCase spelling, so that an error names them as the caller did.
      ...(given.restartQuarantine === undefined ? {} : { restartQuarantine: given.restartQuarantine }),
      ...(given.maxTtlMs === undefined ? {} : { maxTtlMs: given.maxTtlMs }),
    })
  }

  /** Releases every lock still held, closes this library's connections, then quits the clients as redlock does. */
  async quit() {
    await this.#lock.close()
    await Promise.all(this.#members.map((client) => client.quit()))
  }

  async acquire(resources, duration, settings) {
    checkCall(resources, duration)
    const { lock } = await this.#acquire(resources, duration, this.#callSettings('acquire()', settings), false)
    return lock
  }

  async release(lock, settings) {
    this.#callSettings('release()', settings)
    const entry = this.#entry(lock)
    lock.expiration = 0
    const { released, votes } = await decided.release(this.#lock, entry.handle)
    const stats = this.#stats(votesOf(this.#lock, this.#members.length, lock.resources, votes, { mine: null, absent: released ? 'for' : 'locked' }), lock.resources.length)
    if (!released) throw new ExecutionError(QUORUM_FAILED, [stats])
    return { attempts: [stats] }
  }

  async extend(existing, duration, settings) {
    checkDuration(duration)
    const call = this.#callSettings('extend()', settings)
    if (existing?.expiration < Date.now()) throw new ExecutionError('Cannot extend an already-expired lock.', [])
    const entry = this.#entry(existing)
    const callStart = Date.now()
    const { extended, votes } = await decided.extend(this.#lock, entry.handle, duration)
    const stats = this.#stats(votesOf(this.#lock, this.#members.length, existing.resources, votes, { mine: existing.value, absent: 'locked' }), existing.resources.length)
    const expiration = callStart + this.#validity(entry.handle.validityMs, duration, call.driftFactor)
    if (!extended || expiration <= Date.now()) throw new ExecutionError(QUORUM_FAILED, [stats])
    existing.expiration = 0
    const replacement = new Lock(this, existing.resources, existing.value, [stats], expiration)
    held.set(replacement, entry)
    return replacement
  }

  async using(resources, duration, settingsOrRoutine, optionalRoutine) {
    checkCall(resources, duration)
    const routine = optionalRoutine ?? settingsOrRoutine
    if (typeof routine !== 'function') throw invalidArg('using() needs a routine as its last argument')
    const settings = this.#callSettings('using()', typeof settingsOrRoutine === 'function' ? undefined : settingsOrRoutine)
    if (settings.automaticExtensionThreshold > duration - 100) {
      throw new Error('A lock `duration` must be at least 100ms greater than the `automaticExtensionThreshold` setting.')
    }
    const { lock, handle } = await this.#acquire(resources, duration, settings, true)
    const controller = new AbortController()
    const signal = controller.signal
    const onLost = () => {
      const error = new ExecutionError(handle.signal.reason.message, [])
      error.cause = handle.signal.reason
      signal.error = error
      this.emit('error', error)
      controller.abort(error)
    }
    if (handle.signal.aborted) onLost()
    else handle.signal.addEventListener('abort', onLost, { once: true })
    let value
    try {
      value = await routine(signal)
    } catch (error) {
      handle.signal.removeEventListener('abort', onLost)
      // The routine's own error says more than a release that found the lease gone.
      await this.release(lock).catch(() => {})
      throw error
    }
    handle.signal.removeEventListener('abort', onLost)
    await this.release(lock)
    return value
  }

  /** Attempts until one wins or the retries run out, as redlock counts and spaces them. */
  async #acquire(resources, duration, settings, autoExtend) {
    const maxAttempts = settings.retryCount === -1 ? Infinity : settings.retryCount + 1
    const attempts = []
    for (let made = 1; ; made++) {
      const attempt = await attemptOnce(this.#lock, this.#members.length, resources, duration, autoExtend)
      // Unlimited retries keep only the attempt that won: the list would grow without bound.
      const kept = maxAttempts !== Infinity || attempt.handle !== null
      if (kept) attempts.push(this.#stats(attempt.votes(), resources.length))
      if (attempt.handle !== null) {
        const expiration = attempt.callStart + this.#validity(attempt.handle.validityMs, duration, settings.driftFactor)
        if (expiration > Date.now()) {
          const lock = new Lock(this, resources, attempt.handle.value, attempts, expiration)
          held.set(lock, { owner: this, handle: attempt.handle })
          return { lock, handle: attempt.handle }
        }
        // The validity ran out before this code got the result (a busy event loop): no use to anyone.
        attempt.handle.release().catch(() => {})
      }
      if (made >= maxAttempts) throw new ExecutionError(QUORUM_FAILED, attempts)
      await retryPause(settings)
    }
  }

  /**
   * The engine's validity, shortened when a call asks for a larger drift
   * allowance than the instance's (a smaller one cannot lengthen it).
   */
  #validity(validityMs, duration, driftFactor) {
    return validityMs - Math.max(0, Math.ceil(duration * (driftFactor - this.#driftFactor)))
  }

  #callSettings(where, settings) {
    return { ...this.settings, ...checkSettings(where, settings, CALL_SETTINGS) }
  }

  #entry(lock) {
    const entry = held.get(lock)
    if (entry === undefined || entry.owner !== this) {
      throw invalidArg('the lock must be one that acquire() or extend() of this Redlock returned')
    }
    return entry
  }

  /** redlock's stats of one attempt, keyed by the caller's clients; every vote against is also emitted on 'error'. */
  async #stats(votes, resourceCount) {
    const list = await votes
    const stats = {
      membershipSize: this.#members.length,
      quorumSize: Math.floor(this.#members.length / 2) + 1,
      votesFor: new Set(),
      votesAgainst: new Map(),
    }
    list.forEach((entry, i) => {
      const client = this.#members[i]
      if (entry.vote === 'for') {
        stats.votesFor.add(client)
        return
      }
      const error = entry.vote === 'locked'
        ? new ResourceLockedError(`The operation was applied to: 0 of the ${resourceCount} requested resources.`)
        : new Error(entry.message)
      stats.votesAgainst.set(client, error)
      this.emit('error', error)
    })
    return stats
  }
}

Redlock.default = Redlock
Redlock.Redlock = Redlock
Redlock.Lock = Lock
Redlock.ExecutionError = ExecutionError
Redlock.ResourceLockedError = ResourceLockedError

module.exports = Redlock

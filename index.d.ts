/**
 * A Redlock distributed lock over independent Redis nodes, with a native
 * Rust engine. A lock is held when a majority of the nodes granted it within
 * its validity.
 *
 * @example
 * ```ts
 * import { DistributedLock } from 'redis-quorum-lock'
 *
 * const lock = new DistributedLock({
 *   redis_nodes: ['localhost:6379', 'localhost:6380', 'localhost:6381'],
 *   lock_ttl_ms: 30000,
 * })
 * const handle = await lock.acquire('my-lock')
 * if (handle) {
 *   try {
 *     // work while the lease is valid
 *   } finally {
 *     await lock.release(handle)
 *   }
 * }
 * await lock.close()
 * ```
 * @packageDocumentation
 */

import type { HealthReport, LockInfo, NodeConfig, NodeError, NodeVote, Stats } from './binding'

// The shapes of results and reports are declared once, in Rust, and
// generated into binding.d.ts with their documentation.
export type { HealthReport, LockInfo, NodeChange, NodeError, NodeHealth, NodeLockInfo, NodeStats, NodeVote, Stats, Vote } from './binding'

/**
 * One Redis node: `host`, `host:port`, `[::1]:6380`,
 * `redis://[user:pass@]host:port[/db]`, `rediss://...` (TLS), an Azure /
 * StackExchange.Redis connection string
 * (`myrediscache.redis.cache.windows.net:6380,password=...,ssl=True,abortConnect=False`,
 * with the keys `password`, `user`, `ssl`, `defaultDatabase` and
 * `abortConnect`, which is accepted and ignored), or an object. In a URL, a
 * `/`, `?` or `#` in the user name or password must be percent-encoded
 * (`encodeURIComponent`). A password never appears in an error message.
 */
export type RedisNode = string | RedisNodeOptions

/** A Redis node given as an object, as in `REDIS_INSTANCES`. */
export interface RedisNodeOptions {
  /** Host name or IP address. */
  host: string
  /** Port; 6379 when omitted. */
  port?: number
  /** ACL user name. */
  username?: string
  /** Password; never shown in an error message. */
  password?: string
  /** Database number; 0 when omitted. */
  db?: number
  /** Connect with TLS. */
  tls?: boolean
  /** Alias of `tls`. */
  ssl?: boolean
  /** This node's {@link CredentialsProvider}, in place of the lock's `credentials`. */
  credentials?: CredentialsProvider
}

/** What a {@link CredentialsProvider} returns. */
export interface RedisCredentials {
  /** The ACL user; the node's own `username`, if any, when absent. */
  username?: string
  /** The password or token. Never shown in a message, a log line or `health()`. */
  password: string
  /**
   * When the password stops working, in epoch ms (as `Date.now()` counts).
   * The lock asks for credentials again ahead of it and authenticates every
   * open connection again in place; without it, only new connections ask.
   */
  expiresAt?: number
}

/**
 * Where rotating credentials come from (a token of Microsoft Entra ID, a
 * secret store): called, on the JavaScript thread, before the first `AUTH`
 * of every connection (a reconnection too), and again ahead of
 * `expiresAt`: at the earlier of 5 minutes before it and three quarters of
 * the way from the call to it, at least a second after the call. Calls are
 * coalesced: one serves every connection that needs credentials while it
 * runs. A call that throws, rejects, returns something else than
 * {@link RedisCredentials} or does not settle within `connect_timeout_ms`
 * costs its node's vote (`nodeErrors`: "credentials provider failed: ...",
 * its error message shown, never what it returned) and is retried with
 * the reconnection backoff. `redis-quorum-lock/azure` has `entraId()`.
 */
export type CredentialsProvider = () => RedisCredentials | Promise<RedisCredentials>

/**
 * Options of a {@link DistributedLock}. Every key is also accepted in
 * camelCase (`redisNodes`, `lockTtlMs`, ...); an unknown key, both spellings
 * of one key, or a value of the wrong type or range throws an error with
 * code `ERR_INVALID_ARG`.
 */
export interface DistributedLockOptions {
  /**
   * The independent Redis nodes of the quorum, 1 to 15 and no duplicates.
   * Default: env `REDIS_NODES` (comma separated; a comma followed by a
   * `key=value` pair continues the connection string before it), else env
   * `REDIS_INSTANCES` (JSON list of `{host, port, password, ssl}` or node
   * strings), else `localhost:6379`, `localhost:6380`, `localhost:6381`.
   */
  redis_nodes?: RedisNode[]
  /** camelCase spelling of {@link DistributedLockOptions.redis_nodes}. */
  redisNodes?: RedisNode[]
  /** Default lease length in ms, 1 to 2^31-1. Default: env `REDIS_LOCK_TTL_MS`, else 30000. */
  lock_ttl_ms?: number
  /** camelCase spelling of {@link DistributedLockOptions.lock_ttl_ms}. */
  lockTtlMs?: number
  /**
   * Further attempts after the first; -1 retries without limit (until the
   * lock is acquired or closed). Default: env `REDIS_RETRY_COUNT`, else 3.
   */
  retry_count?: number
  /** camelCase spelling of {@link DistributedLockOptions.retry_count}. */
  retryCount?: number
  /** Base delay between attempts in ms. Default: env `REDIS_RETRY_DELAY_MS`, else 200. */
  retry_delay_ms?: number
  /** camelCase spelling of {@link DistributedLockOptions.retry_delay_ms}. */
  retryDelayMs?: number
  /** Random extra delay, 0 to this many ms, added to each retry. Default: 100. */
  retry_jitter_ms?: number
  /** camelCase spelling of {@link DistributedLockOptions.retry_jitter_ms}. */
  retryJitterMs?: number
  /**
   * Clock drift allowance, 0 to 0.5: validity = ttl - elapsed - (ttl * drift_factor + 2 ms).
   * Default: 0.01.
   */
  drift_factor?: number
  /** camelCase spelling of {@link DistributedLockOptions.drift_factor}. */
  driftFactor?: number
  /**
   * Prefix of every key this library writes, at most 256 bytes: the lock of
   * a resource is `<key_prefix><resource>`, its fencing counter
   * `<key_prefix>fence:<resource>` (so resource names may not begin with
   * `fence:`). Default: `'redlock:'`.
   */
  key_prefix?: string
  /** camelCase spelling of {@link DistributedLockOptions.key_prefix}. */
  keyPrefix?: string
  /** How long one connection attempt to a node may take, in ms. Default: 5000. */
  connect_timeout_ms?: number
  /** camelCase spelling of {@link DistributedLockOptions.connect_timeout_ms}. */
  connectTimeoutMs?: number
  /**
   * How long a node may take to answer one command before it counts as a
   * failed vote, in ms (never longer than the TTL of the call). Default: 500.
   */
  command_timeout_ms?: number
  /** camelCase spelling of {@link DistributedLockOptions.command_timeout_ms}. */
  commandTimeoutMs?: number
  /**
   * Keep the vote of a node that may have forgotten locks out of the quorum:
   * a node without durable persistence (AOF with `appendfsync always`, read
   * with `CONFIG GET` when allowed) that started less than `max_ttl_ms` ago.
   * It still receives every write. Learnt from `INFO server` on every
   * (re)connection. Default: `true`.
   */
  restart_quarantine?: boolean
  /** camelCase spelling of {@link DistributedLockOptions.restart_quarantine}. */
  restartQuarantine?: boolean
  /**
   * The longest lease any client of these nodes holds, in ms: how long a
   * restarted node stays in quarantine. Give the longest TTL of the whole
   * fleet when clients use different TTLs. Default (and floor): the longest
   * TTL this instance has been configured with or used.
   */
  max_ttl_ms?: number
  /** camelCase spelling of {@link DistributedLockOptions.max_ttl_ms}. */
  maxTtlMs?: number
  /**
   * The user name and password of every node without `credentials` of its
   * own, from a {@link CredentialsProvider}; they replace the node's
   * `password` (and its `username`, when the provider gives one). Same in
   * both spellings.
   */
  credentials?: CredentialsProvider
  /**
   * OpenTelemetry metrics and traces of this instance's calls (README,
   * Observability): `true` for the global meter and tracer providers, or
   * the providers to use. Needs the optional peer dependency
   * `@opentelemetry/api`; without it the constructor throws
   * `ERR_INVALID_ARG` saying so.
   */
  telemetry?: boolean | TelemetryOptions
}

/** The `telemetry` option as an object. */
export interface TelemetryOptions {
  /**
   * Where the instruments are made (an `@opentelemetry/api` `MeterProvider`,
   * typed here by what the lock calls, so that the types need no
   * OpenTelemetry package); the global meter provider when absent.
   */
  meterProvider?: { getMeter(name: string, version?: string, options?: object): unknown }
  /** Where the spans are made (a `TracerProvider`); the global tracer provider when absent. */
  tracerProvider?: { getTracer(name: string, version?: string, options?: object): unknown }
  /**
   * Add the resource names to the metrics as `lock.resource` (one series
   * per resource: mind the cardinality). Spans always carry them. Default `false`.
   */
  resourceAttribute?: boolean
}

/** The outcome of an acquire in its channel context and metrics. */
export type AcquireOutcome = 'acquired' | 'held' | 'unavailable' | 'aborted' | 'error'

/**
 * The context object of the `redis-quorum-lock:acquire`, `:extend` and
 * `:release` TracingChannels (`start`, `end`, `asyncStart`, `asyncEnd`,
 * `error`). Built only while the channel has subscribers; the decision
 * fields are filled in when the call is decided, before `asyncStart`.
 */
export interface CallContext {
  /** The instance the call was made on. */
  lock: DistributedLock
  /** The resources: as given to acquire, the handle's for extend and release. */
  resources: string[] | undefined
  /** The TTL as given (`undefined`: the lock's or the handle's). Not on release. */
  ttlMs?: number
  /** How many attempts the call made (0 when no node was asked). */
  attempts: number
  /** What each node answered in the deciding attempt, with its latency. */
  votes: NodeVote[]
  /**
   * acquire: {@link AcquireOutcome}; extend: `'extended'`, `'lost'` or
   * `'error'`; release: `'released'`, `'expired'` (no majority held it
   * any more) or `'error'`.
   */
  outcome: string | undefined
  /** The handle: acquire's once won (else `null`), the one passed to extend and release. */
  handle: LockHandle | null
  /** With `fencing`, the acquired handle's token (acquire only). */
  fencingToken?: bigint | null
  /** Set by the channel: what the call resolved with. */
  result?: unknown
  /** Set by the channel: what the call rejected with. */
  error?: LockError
}

/** A message of the `redis-quorum-lock:lost` channel: a lease this process held is gone. */
export interface LostMessage {
  lock: DistributedLock
  handle: LockHandle
  resources: string[]
  /** Why: the watchdog ran out of time, or an extension found the lease gone. */
  reason: string
}

/** A message of the `redis-quorum-lock:watchdog` channel: one native extension of an auto-extended lease. */
export interface WatchdogMessage {
  lock: DistributedLock
  /** The handle, while it is watched (`undefined` once released). */
  handle: LockHandle | undefined
  resources: string[] | undefined
  /** Whether a majority extended it in time. */
  extended: boolean
  /** Whether the watchdog gave the lease up after it (then `:lost` follows). */
  lost: boolean
  /** The new guaranteed time in ms, when extended. */
  validityMs: number | null
  /** How many nodes granted the extension. */
  granted: number
}

/** A message of the `redis-quorum-lock:node` channel: a node's change of state, as a call saw it. */
export interface NodeMessage {
  lock: DistributedLock
  /** The node as `host:port`, never with its password. */
  node: string
  /** `down`: a command failed on it; `up`: it answers again; `quarantined` / `counted`: its vote stops / starts counting (restart quarantine). */
  change: 'down' | 'up' | 'quarantined' | 'counted'
  /** Why, for `down`. */
  error: string | null
}

/** Per-call options of {@link DistributedLock.acquire}; each overrides the lock's own. */
export interface AcquireOptions {
  /** Further attempts after the first; -1 retries without limit. */
  retry_count?: number
  /** camelCase spelling of {@link AcquireOptions.retry_count}. */
  retryCount?: number
  /** Base delay between attempts in ms. */
  retry_delay_ms?: number
  /** camelCase spelling of {@link AcquireOptions.retry_delay_ms}. */
  retryDelayMs?: number
  /** Random extra delay, 0 to this many ms, added to each retry. */
  retry_jitter_ms?: number
  /** camelCase spelling of {@link AcquireOptions.retry_jitter_ms}. */
  retryJitterMs?: number
  /**
   * Keep the lease alive until release: a native watchdog extends it on the
   * I/O thread, between a third and a half of its validity after each
   * extension, so a busy event loop cannot lose it. When no extension
   * reaches a majority within the remaining validity, or a majority refuses
   * one, the handle's `signal` aborts with reason code `ERR_LOCK_LOST` (when
   * the validity ends, if not before) and the watchdog stops. An
   * `extend(ttlMs)` of your own sets the validity (a shorter one too), the
   * TTL the watchdog extends with from then on, and its next turn.
   */
  auto_extend?: boolean
  /** camelCase spelling of {@link AcquireOptions.auto_extend}. */
  autoExtend?: boolean
  /**
   * Keep trying for up to this many ms while the resource is held: woken at
   * once when the holder releases (a release notification on each node) or
   * when the holder's lease runs out, whichever is first; `null` when the
   * wait runs out, within `wait_ms` plus one command timeout whatever the
   * nodes do. Retries are unlimited within the wait unless
   * `retry_count` is given too.
   */
  wait_ms?: number
  /** camelCase spelling of {@link AcquireOptions.wait_ms}. */
  waitMs?: number
  /** Aborts the call: it rejects at once with code `ABORT_ERR`, and leaves no subscription behind. */
  signal?: AbortSignal
  /**
   * Also return a {@link LockHandle.fencingToken}: strictly increasing per
   * resource across successive holders. Costs one more round trip.
   */
  fencing?: boolean
  /**
   * Holder information stored with the lock on each node (same TTL, removed
   * with it, kept by extend) and shown by {@link DistributedLock.inspect}.
   * String values only; at most 8192 bytes as JSON.
   */
  metadata?: Record<string, string>
}

/** A lock this process holds, as returned by {@link DistributedLock.acquire}. */
export declare class LockHandle {
  private constructor()
  /** The first (or only) resource. */
  readonly resource: string
  /** Every resource this lock holds, in the order given. */
  readonly resources: string[]
  /** This owner's unique random token, stored as the value of each key (followed by the metadata, when given). */
  readonly value: string
  /**
   * How long the lease is guaranteed, in ms, counted from the start of the
   * acquire (or extend) call: `ttl - elapsed - drift`, so start + validityMs
   * is a safe deadline even when the event loop was busy when the call
   * resolved. Updated by a successful extend.
   */
  readonly validityMs: number
  /**
   * Epoch ms at which the guaranteed validity ends: when the winning write
   * was issued, plus the TTL, minus the drift allowance, so never later than
   * the keys' expiry on the nodes. Updated by a successful extend.
   */
  readonly expiresAt: number
  /** How many attempts acquire needed. */
  readonly attempts: number
  /**
   * With `fencing: true`: larger than the token of every earlier holder of
   * each of these resources, so a resource that remembers the largest token
   * it accepted can refuse a writer whose lease ended. An exact integer of
   * at most 2^64 - 1, whatever its size. `null` otherwise.
   */
  readonly fencingToken: bigint | null
  /** Same as `lock.extend(handle, ttlMs)`. */
  extend(ttlMs?: number): Promise<boolean>
  /**
   * Aborted, with an `Error` of code `ERR_LOCK_LOST` as its reason, when the
   * library learns the lease is lost: a failed extend, or a failed watchdog
   * extension. Never aborted by a normal release.
   */
  readonly signal: AbortSignal
  /** Same as `lock.release(handle)`. */
  release(): Promise<boolean>
  /** Releases the lock: `await using handle = await lock.acquire(...)` releases it at scope exit. */
  [Symbol.asyncDispose](): Promise<void>
}

/** Options of {@link DistributedLock.health}. */
export interface HealthOptions {
  /**
   * Also count each node's lock keys (its keys under `key_prefix`, fencing
   * counters left out) with `SCAN`, a thousand keys a step; it costs a walk
   * of the node's keys. Default `false`.
   */
  lock_keys?: boolean
  /** camelCase spelling of {@link HealthOptions.lock_keys}. */
  lockKeys?: boolean
}

/**
 * The codes of every error this library raises. `ERR_INTERNAL` is a bug
 * inside the library (a panic caught in the native code, with its message):
 * the call failed, the process goes on.
 */
export type LockErrorCode =
  | 'ERR_INVALID_ARG'
  | 'ERR_LOCK_CLOSED'
  | 'ERR_QUORUM_UNAVAILABLE'
  | 'ERR_LOCK_NOT_ACQUIRED'
  | 'ERR_LOCK_LOST'
  | 'ABORT_ERR'
  | 'ERR_INTERNAL'

/** The shape of every error this library raises. */
export interface LockError extends Error {
  /** What went wrong, for code to branch on. */
  code: LockErrorCode
  /** On `ERR_QUORUM_UNAVAILABLE`: one entry per node that failed. */
  nodeErrors?: NodeError[]
}

/**
 * A Redlock quorum lock over independent Redis nodes. Connections open on
 * first use; one connection per node serves every call, and delivers the
 * commands to its node in the order they were issued.
 */
export declare class DistributedLock {
  /**
   * @param options see {@link DistributedLockOptions}; every option has a default.
   * @throws {LockError} `ERR_INVALID_ARG` for an unknown key, a duplicate
   *   spelling, or a value of the wrong type or range.
   */
  constructor(options?: DistributedLockOptions)

  /**
   * Acquires `resource` (a list is locked all-or-nothing) for `ttlMs`
   * (default: `lock_ttl_ms`). A list holds at most 64 distinct names; a
   * name, and all names of one call together, take at most 1 MiB of UTF-8.
   * Larger input is rejected from its size, before any of it is read.
   * @returns a handle when a majority of nodes granted the lock within its
   *   validity; `null` when the resource is held by another owner after
   *   every attempt.
   * @throws {LockError} (as a rejection) `ERR_QUORUM_UNAVAILABLE` when the
   *   last attempt failed because fewer than a majority of nodes answered,
   *   with `nodeErrors`; `ERR_INVALID_ARG` (for a resource or option, past
   *   those limits, or for a resource named `fence:...`, the name of another
   *   resource's fencing counter); `ERR_LOCK_CLOSED`.
   */
  acquire(resource: string | string[], ttlMs?: number, options?: AcquireOptions): Promise<LockHandle | null>

  /**
   * Extends the lease to `ttlMs` (default: the TTL it was acquired with) on
   * every node where this handle still owns it.
   * @returns `true` when a majority extended it within its validity, else
   *   `false` (the lock is lost).
   * @throws {LockError} (as a rejection) `ERR_INVALID_ARG` for a handle that is not
   *   this lock's; `ERR_LOCK_CLOSED`.
   */
  extend(handle: LockHandle, ttlMs?: number): Promise<boolean>

  /**
   * Deletes the lock on every node where this handle still owns it; a lock
   * is only ever deleted by its owner.
   * @returns `true` when a majority still had it; `false` when released
   *   before or expired.
   * @throws {LockError} (as a rejection) `ERR_INVALID_ARG` for a handle that is not
   *   this lock's; `ERR_LOCK_CLOSED`.
   */
  release(handle: LockHandle): Promise<boolean>

  /**
   * Runs `routine` while holding `resource`: acquires it (default TTL, no
   * options), keeps the lease alive natively while the routine runs, passes
   * the handle's `signal` (aborted with `ERR_LOCK_LOST` if the lease is lost)
   * and the handle, and releases when the routine settles.
   * @returns the routine's value; rethrows its error.
   * @throws {LockError} (as a rejection) `ERR_LOCK_NOT_ACQUIRED` when the lock
   *   is held by another owner after every attempt, and the errors of acquire.
   */
  using<T>(resource: string | string[], routine: (signal: AbortSignal, handle: LockHandle) => Promise<T>): Promise<T>
  /** {@link DistributedLock.using} with a TTL. */
  using<T>(resource: string | string[], ttlMs: number, routine: (signal: AbortSignal, handle: LockHandle) => Promise<T>): Promise<T>
  /** {@link DistributedLock.using} with a TTL and acquire options (`auto_extend` is always on). */
  using<T>(
    resource: string | string[],
    ttlMs: number,
    options: AcquireOptions,
    routine: (signal: AbortSignal, handle: LockHandle) => Promise<T>,
  ): Promise<T>

  /**
   * What each node holds for `resource` (one name), and whether a majority
   * agrees on one holder. Waits for every node up to the command timeout.
   * @throws {LockError} (as a rejection) `ERR_INVALID_ARG`; `ERR_LOCK_CLOSED`.
   */
  inspect(resource: string): Promise<LockInfo>

  /**
   * Pings every node (opening connections not yet open, and at once those
   * of nodes in reconnection backoff) and tells whether a quorum is
   * reachable now, with what each node tells of itself (version, role,
   * memory, persistence); with `lock_keys: true`, also each node's lock keys.
   * @throws {LockError} (as a rejection) `ERR_INVALID_ARG` for an unknown
   *   option or a value of the wrong type; `ERR_LOCK_CLOSED`.
   */
  health(options?: HealthOptions): Promise<HealthReport>

  /**
   * What this instance did since it was made, counted natively (the
   * watchdog's extensions and losses included), and each node as the
   * last command found it. Synchronous, asks no node.
   */
  stats(): Stats

  /**
   * Releases every lock this instance still holds, closes the connections
   * and lets the process exit; resolves within the command timeout (plus a
   * few milliseconds), whatever the nodes do. Every later call rejects with
   * `ERR_LOCK_CLOSED`; calling `close` again resolves.
   */
  close(): Promise<void>
}

/** A node as {@link resolveNodes} returns it. */
export interface ResolvedNode extends NodeConfig {
  /** The node's {@link CredentialsProvider} (its own or the lock's), as a function that always returns a promise. */
  credentials?: () => Promise<RedisCredentials>
}

/**
 * The nodes a {@link DistributedLock} built with `options` would use, read
 * from the options, `REDIS_NODES` or `REDIS_INSTANCES` exactly as the lock
 * reads them. For tools such as a health check.
 * @throws {LockError} `ERR_INVALID_ARG` for a bad option or environment value.
 */
export declare function resolveNodes(options?: DistributedLockOptions): ResolvedNode[]

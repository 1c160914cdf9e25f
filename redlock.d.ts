/**
 * `redis-quorum-lock/redlock`: the API of npm `redlock@5.0.0-beta.2` on this
 * package's native engine. Code written for redlock runs with only its import
 * changed:
 *
 * @example
 * ```ts
 * import Redis from 'ioredis'
 * import Redlock, { ExecutionError, ResourceLockedError } from 'redis-quorum-lock/redlock'
 *
 * const redlock = new Redlock([redisA, redisB, redisC], { retryCount: 10 })
 * let lock = await redlock.acquire(['a'], 5000)
 * try {
 *   lock = await lock.extend(5000)
 * } finally {
 *   await lock.release()
 * }
 * ```
 *
 * The clients give each node's host, port, username, password, db, TLS and
 * key prefix; they are not used for locking (this library opens its own
 * connections). The client type is structural (no dependency on ioredis's
 * types) and generic, so the stats are keyed by the caller's own client type.
 * @packageDocumentation
 */

import { EventEmitter } from 'events'

declare namespace Redlock {
  /** What is read from a client: ioredis's `Redis` has it (a `Cluster` is refused when constructing). */
  export interface RedisClient {
    readonly options: RedisClientOptions
    quit(): Promise<unknown>
  }

  /** The connection options of an ioredis client that name its node. */
  export interface RedisClientOptions {
    host?: string
    port?: number
    username?: string | null
    password?: string | null
    db?: number
    /** Any value turns TLS on; the server certificate is checked against the system's roots or `SSL_CERT_FILE`. */
    tls?: unknown
    /** Used as the prefix of every lock key; all clients must agree on it. */
    keyPrefix?: string
    /** Refused when set: the nodes are reached by host and port. */
    path?: string
    /** Refused when set: the quorum needs the independent nodes themselves. */
    sentinels?: unknown
  }

  export type ClientExecutionResult<C extends RedisClient = RedisClient> =
    | { client: C; vote: 'for'; value: number }
    | { client: C; vote: 'against'; error: Error }

  /** One attempt's votes, keyed by the caller's clients. */
  export type ExecutionStats<C extends RedisClient = RedisClient> = {
    readonly membershipSize: number
    readonly quorumSize: number
    readonly votesFor: Set<C>
    /** A {@link ResourceLockedError} for a node that holds another value (or not this lock's, for extend and release). */
    readonly votesAgainst: Map<C, Error>
  }

  export type ExecutionResult<C extends RedisClient = RedisClient> = {
    /** One promise per attempt, resolved once every node's vote is known. */
    attempts: ReadonlyArray<Promise<ExecutionStats<C>>>
  }

  export interface Settings {
    /** Clock drift allowance: expiration = start + duration - (duration * driftFactor + 2 ms) - elapsed. Default 0.01. */
    readonly driftFactor: number
    /** Attempts after the first; -1 retries until acquired (or `quit()`). Default 10. */
    readonly retryCount: number
    /** ms between attempts. Default 200. */
    readonly retryDelay: number
    /** Up to this many ms more or less than `retryDelay`, at random, for each retry. Default 100. */
    readonly retryJitter: number
    /**
     * Checked as in redlock (`using` needs a duration at least 100 ms longer);
     * the native watchdog keeps its own schedule. Default 500.
     */
    readonly automaticExtensionThreshold: number
  }

  /** Settings of this library, for the constructor only. */
  export interface LockSettings {
    /** See `restart_quarantine` of the main API. Default true. */
    readonly restartQuarantine?: boolean
    /** See `max_ttl_ms` of the main API: the longest lease of any client of these nodes. */
    readonly maxTtlMs?: number
  }

  export class ResourceLockedError extends Error {
    readonly message: string
    constructor(message: string)
  }

  /**
   * An operation that did not reach a quorum. The clients of a caught error
   * are not known statically (`instanceof` narrows to the default type), so
   * they default to `any`.
   */
  export class ExecutionError<C extends RedisClient = any> extends Error {
    readonly message: string
    readonly attempts: ReadonlyArray<Promise<ExecutionStats<C>>>
    constructor(message: string, attempts: ReadonlyArray<Promise<ExecutionStats<C>>>)
  }

  /** A held lock. A new one comes from each `extend`; the one extended then has `expiration` 0. */
  export class Lock<C extends RedisClient = RedisClient> {
    readonly redlock: Redlock<C>
    readonly resources: string[]
    readonly value: string
    readonly attempts: ReadonlyArray<Promise<ExecutionStats<C>>>
    /** Epoch ms until which the lock is guaranteed; 0 once released or extended. */
    expiration: number
    /** Only a Lock returned by `acquire` or `extend` can be released or extended. */
    constructor(
      redlock: Redlock<C>,
      resources: string[],
      value: string,
      attempts: ReadonlyArray<Promise<ExecutionStats<C>>>,
      expiration: number,
    )
    release(): Promise<ExecutionResult<C>>
    extend(duration: number): Promise<Lock<C>>
  }

  /** The `signal` of a `using` routine: aborted, with `error` set, when the lease is lost. */
  export type RedlockAbortSignal = AbortSignal & { error?: Error }

  export { Redlock as default }
}

/**
 * A Redlock over one ioredis client per independent Redis node. Emits
 * `'error'` with each vote against (a {@link Redlock.ResourceLockedError}
 * too), and with the error of a `using` lease that was lost.
 */
declare class Redlock<C extends Redlock.RedisClient = Redlock.RedisClient> extends EventEmitter {
  readonly clients: Set<C>
  readonly settings: Redlock.Settings

  /**
   * @throws `Error` with code `ERR_INVALID_ARG` for an ioredis `Cluster`, a
   *   Sentinel or Unix-socket client, clients with different `keyPrefix`,
   *   custom scripts, or a setting of the wrong name, type or range.
   */
  constructor(clients: Iterable<C>, settings?: Partial<Redlock.Settings> & Redlock.LockSettings)

  /** Releases every lock still held, closes this library's connections, then calls `quit()` on each client. */
  quit(): Promise<void>

  /**
   * Locks every resource for `duration` ms (an integer, at most 2^31-1).
   * @throws {Redlock.ExecutionError} (as a rejection) when no attempt won
   *   within `retryCount + 1` attempts.
   */
  acquire(resources: string[], duration: number, settings?: Partial<Redlock.Settings>): Promise<Redlock.Lock<C>>

  /**
   * Deletes the lock wherever it is still this lock's, in one attempt.
   * @throws {Redlock.ExecutionError} (as a rejection) when a majority no longer held it.
   */
  release(lock: Redlock.Lock<C>, settings?: Partial<Redlock.Settings>): Promise<Redlock.ExecutionResult<C>>

  /**
   * Sets the lock's TTL to `duration` ms on every node that still holds it, in one attempt.
   * @throws {Redlock.ExecutionError} (as a rejection) when the lock expired, or a majority did not extend it in time.
   */
  extend(existing: Redlock.Lock<C>, duration: number, settings?: Partial<Redlock.Settings>): Promise<Redlock.Lock<C>>

  /**
   * Acquires, runs `routine` while the native watchdog keeps the lease
   * alive, and releases when it settles. `signal.aborted` and
   * `signal.error` tell the routine that the lease was lost.
   */
  using<T>(
    resources: string[],
    duration: number,
    settings: Partial<Redlock.Settings>,
    routine?: (signal: Redlock.RedlockAbortSignal) => Promise<T>,
  ): Promise<T>
  using<T>(resources: string[], duration: number, routine: (signal: Redlock.RedlockAbortSignal) => Promise<T>): Promise<T>
}

export = Redlock

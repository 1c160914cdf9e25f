// The libraries the benchmark compares, behind one small interface: this
// library (bare, and with its OpenTelemetry metrics and spans recorded by the
// SDKs: the cost of turning telemetry on), four npm Redlock implementations
// on ioredis, and `raw`, the
// limit for a JavaScript client (SET NX PX to every node at once, decided at
// quorum, released with a compare-and-delete script).

import { randomUUID } from 'node:crypto'

import type { SpanExporter } from '@opentelemetry/sdk-trace-base'
import { Redlock as SesameRedlock } from '@sesamecare-oss/redlock'
import Redis from 'ioredis'
import Redlock from 'redlock'
import { createRedlock, IoredisAdapter } from 'redlock-universal'
import { RedlockMutex } from 'redis-semaphore'

import { DistributedLock, type DistributedLockOptions } from '..'

export interface RetryPolicy {
  /** Attempts after the first; -1 for no limit. */
  retries: number
  delayMs: number
  /** Wait this long, woken by the release, where the library can (this one only). */
  waitMs?: number
}

export interface Contender {
  /** Acquires `key` for `ttlMs`; the release, or null when not acquired. */
  acquire(key: string, ttlMs: number): Promise<(() => Promise<unknown>) | null>
  close(): Promise<void>
}

export type ContenderFactory = (addresses: string[], retry: RetryPolicy) => Contender

export const NAMES = ['ours', 'ours+otel', 'redlock', 'sesamecare', 'redlock-universal', 'redis-semaphore', 'raw'] as const
export type Name = (typeof NAMES)[number]

export const LABELS: Record<Name, string> = {
  ours: 'redis-quorum-lock',
  'ours+otel': 'redis-quorum-lock, telemetry on',
  redlock: 'redlock@5.0.0-beta.2',
  sesamecare: '@sesamecare-oss/redlock',
  'redlock-universal': 'redlock-universal',
  'redis-semaphore': 'redis-semaphore RedlockMutex',
  raw: 'raw ioredis',
}

function clients(addresses: string[]): Redis[] {
  return addresses.map((address) => {
    const at = address.lastIndexOf(':')
    return new Redis({ host: address.slice(0, at), port: Number(address.slice(at + 1)) })
  })
}

/** npm redlock and its fork share one API. */
interface NodeRedlock {
  acquire(resources: string[], duration: number): Promise<{ release(): Promise<unknown> }>
  quit(): Promise<void>
}

function redlockSettings(retry: RetryPolicy) {
  return { retryCount: retry.retries, retryDelay: retry.delayMs, retryJitter: 0 }
}

function nodeRedlock(instance: NodeRedlock): Contender {
  return {
    async acquire(key, ttlMs) {
      const lock = await instance.acquire([key], ttlMs).catch(() => null)
      return lock && (() => lock.release())
    },
    close: () => instance.quit(),
  }
}

/** Drops every span it is given: the SDK builds, ends and batches each span, nothing is kept. */
const DISCARD: SpanExporter = {
  export: (_spans, done) => done({ code: 0 }),
  shutdown: async () => {},
}

/** This library with `extra` options. */
function ours(addresses: string[], retry: RetryPolicy, extra: Partial<DistributedLockOptions> = {}, closing = async () => {}): Contender {
  const lock = new DistributedLock({
    redis_nodes: addresses,
    retry_count: retry.retries,
    retry_delay_ms: retry.delayMs,
    retry_jitter_ms: 0,
    // The nodes start empty and without persistence: with the quarantine
    // on, their votes would not count for the first max_ttl_ms.
    restart_quarantine: false,
    ...extra,
  })
  return {
    async acquire(key, ttlMs) {
      const handle = await lock.acquire(key, ttlMs, retry.waitMs === undefined ? undefined : { wait_ms: retry.waitMs })
      return handle && (() => lock.release(handle))
    },
    async close() {
      await lock.close()
      await closing()
    },
  }
}

const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

export const FACTORIES: Record<Name, ContenderFactory> = {
  ours: (addresses, retry) => ours(addresses, retry),

  'ours+otel'(addresses, retry) {
    // Loaded here, so that the other contenders' processes do not carry the SDKs.
    const { MeterProvider, MetricReader } = require('@opentelemetry/sdk-metrics') as typeof import('@opentelemetry/sdk-metrics')
    const { BasicTracerProvider, BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base') as typeof import('@opentelemetry/sdk-trace-base')
    /** A reader collected only when asked: the instruments record as under any reader. */
    class HeldReader extends MetricReader {
      protected async onForceFlush(): Promise<void> {}
      protected async onShutdown(): Promise<void> {}
    }
    const meterProvider = new MeterProvider({ readers: [new HeldReader()] })
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(DISCARD)] })
    return ours(addresses, retry, { telemetry: { meterProvider, tracerProvider } }, async () => {
      await Promise.all([meterProvider.shutdown(), tracerProvider.shutdown()])
    })
  },

  redlock: (addresses, retry) => nodeRedlock(new Redlock(clients(addresses), redlockSettings(retry))),

  sesamecare: (addresses, retry) => nodeRedlock(new SesameRedlock(clients(addresses), redlockSettings(retry))),

  'redlock-universal'(addresses, retry) {
    const redis = clients(addresses)
    const adapters = redis.map((client) => new IoredisAdapter(client))
    return {
      async acquire(key, ttlMs) {
        const lock = createRedlock({ adapters, key, ttl: ttlMs, retryAttempts: retry.retries < 0 ? 1e9 : retry.retries, retryDelay: retry.delayMs })
        const handle = await lock.acquire().catch(() => null)
        return handle && (() => lock.release(handle))
      },
      async close() {
        for (const client of redis) client.disconnect()
      },
    }
  },

  'redis-semaphore'(addresses, retry) {
    const redis = clients(addresses)
    return {
      async acquire(key, ttlMs) {
        const mutex = new RedlockMutex(redis, key, {
          lockTimeout: ttlMs,
          acquireAttemptsLimit: retry.retries < 0 ? Number.POSITIVE_INFINITY : retry.retries + 1,
          acquireTimeout: Number.MAX_SAFE_INTEGER,
          retryInterval: retry.delayMs,
          refreshInterval: 0,
        })
        return (await mutex.tryAcquire()) ? () => mutex.release() : null
      },
      async close() {
        for (const client of redis) client.disconnect()
      },
    }
  },

  raw(addresses, retry) {
    const redis = clients(addresses)
    const quorum = Math.floor(redis.length / 2) + 1
    const attempt = (key: string, value: string, ttlMs: number) =>
      new Promise<boolean>((resolve) => {
        let granted = 0
        let answered = 0
        for (const client of redis) {
          client.set(key, value, 'PX', ttlMs, 'NX').then(
            (reply) => reply === 'OK',
            () => false,
          ).then((ok) => {
            answered++
            if (ok) granted++
            if (ok && granted === quorum) resolve(true)
            else if (granted + (redis.length - answered) < quorum) resolve(false)
          })
        }
      })
    const release = (key: string, value: string) => Promise.all(redis.map((client) => client.eval(RELEASE, 1, key, value)))
    return {
      async acquire(key, ttlMs) {
        const value = randomUUID()
        for (let tried = 0; retry.retries < 0 || tried <= retry.retries; tried++) {
          if (await attempt(key, value, ttlMs)) return () => release(key, value)
          await release(key, value)
          await new Promise((resolve) => setTimeout(resolve, retry.delayMs))
        }
        return null
      },
      async close() {
        for (const client of redis) client.disconnect()
      },
    }
  },
}

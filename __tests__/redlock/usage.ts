// Code as written against npm redlock@5.0.0-beta.2 from its README and
// typings, with only the import of Redlock changed. tsc --strict checks it
// against redlock.d.ts; redlock-usage.spec.ts runs it against real nodes,
// and redlock-packaging.spec.ts compiles it against redlock's own typings.

import Client from 'ioredis'
import { formatWithOptions } from 'util'
import Redlock, { ExecutionError, ResourceLockedError, type ExecutionStats, type Lock } from '../../redlock.js'

export function configure(redisA: Client, redisB: Client, redisC: Client): Redlock {
  const redlock = new Redlock(
    // You should have one client for each independent redis node.
    [redisA, redisB, redisC],
    {
      driftFactor: 0.01,
      retryCount: 10,
      retryDelay: 200,
      retryJitter: 200,
      automaticExtensionThreshold: 500,
    },
  )
  redlock.on('error', (error) => {
    // Ignore cases where a resource is explicitly marked as locked on a client.
    if (error instanceof ResourceLockedError) {
      return
    }
    // Log all other errors.
    console.error(error)
  })
  return redlock
}

export async function transfer(
  redlock: Redlock,
  senderId: string,
  recipientId: string,
  amount: number,
  balances: Map<string, number>,
): Promise<number> {
  return redlock.using([senderId, recipientId], 5000, { retryCount: 5 }, async (signal) => {
    const senderBalance = balances.get(senderId) ?? 0
    if (senderBalance < amount) {
      throw new Error('Insufficient balance.')
    }
    // Make sure any attempted lock extension has not failed.
    if (signal.aborted) {
      throw signal.error
    }
    balances.set(senderId, senderBalance - amount)
    balances.set(recipientId, (balances.get(recipientId) ?? 0) + amount)
    return senderBalance - amount
  })
}

export async function work(redlock: Redlock, something: () => Promise<void>): Promise<string> {
  // Acquire a lock.
  let lock = await redlock.acquire(['a'], 5000)
  try {
    // Do something...
    await something()

    // Extend the lock. Note that this returns a new `Lock` instance.
    lock = await lock.extend(5000)

    // Do something else...
    await something()
    return lock.value
  } finally {
    // Release the lock.
    await lock.release()
  }
}

/** Whether a resource is "unavailable", the way redlock's README suggests checking it. */
export async function isLocked(redlock: Redlock, resource: string): Promise<boolean> {
  try {
    const lock: Lock = await redlock.acquire([resource], 1000, { retryCount: 0 })
    await redlock.release(lock)
    return false
  } catch (error) {
    if (error instanceof ExecutionError) return true
    throw error
  }
}

/** An ExecutionError's attempts, formatted as redlock's own tests print them. */
export async function describeFailure(error: unknown): Promise<string> {
  if (!(error instanceof ExecutionError)) {
    throw error
  }
  const stats: ExecutionStats[] = await Promise.all(error.attempts)
  return `${error.message}\n${stats
    .map(
      (s, i) =>
        `ATTEMPT ${i}: ${formatWithOptions(
          { colors: false },
          {
            membershipSize: s.membershipSize,
            quorumSize: s.quorumSize,
            votesForSize: s.votesFor.size,
            votesAgainstSize: s.votesAgainst.size,
            votesAgainstError: [...s.votesAgainst.values()].map((e) => e.message),
          },
        )}`,
    )
    .join('\n')}`
}

/** Which of `clients` voted for an acquisition, from its last attempt's stats. */
export async function grantedBy(lock: Lock, clients: Client[]): Promise<number[]> {
  const last = await lock.attempts[lock.attempts.length - 1]
  return clients.flatMap((client, i) => (last.votesFor.has(client) ? [i] : []))
}

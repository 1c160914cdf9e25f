// The setup most suites share: a cluster of real nodes started before the
// suite and stopped after it, and locks on it that are closed however the
// test that made them ends, so a failed assertion leaks no connection,
// watchdog or held key into the tests after it.

import { after, afterEach, before, beforeEach } from 'node:test'

import { DistributedLock, type DistributedLockOptions } from '../..'
import { Cluster } from './redis'

export interface ClusterSetup {
  /** Options of the suite's shared lock `lock` (its nodes are the cluster's); without them the suite has none. */
  lock?: Omit<DistributedLockOptions, 'redis_nodes' | 'redisNodes'>
  /** `'each'`: every node is flushed before each test. By default keys stay from one test to the next. */
  flush?: 'each' | 'never'
}

export interface ClusterFixture {
  /** The suite's nodes, started in `before` and stopped in `after`. */
  readonly cluster: Cluster
  /** The suite's shared lock, made in `before` and closed in `after`. */
  readonly lock: DistributedLock
  /**
   * A lock on the cluster's nodes with `options` (which may name other
   * nodes), and nothing else of the shared lock's options: a test states
   * every option it relies on. Made in a test, it is closed after that test;
   * made in a `before` hook, after the suite.
   */
  newLock(options?: DistributedLockOptions): DistributedLock
}

/**
 * Registers the `before`, `after`, `beforeEach` and `afterEach` hooks of the
 * suite it is called in (call it in a `describe` body, before hooks that use
 * the cluster) for a cluster of `size` nodes with the default node options.
 */
export function useCluster(size: number, setup: ClusterSetup = {}): ClusterFixture {
  let cluster: Cluster | null = null
  let shared: DistributedLock | null = null
  const suiteLocks: DistributedLock[] = []
  // Set only while a test runs: the locks it made.
  let testLocks: DistributedLock[] | null = null

  const started = (): Cluster => {
    if (cluster === null) throw new Error(`the ${size}-node cluster is not running: it starts in the suite's before hook`)
    return cluster
  }
  const newLock = (options: DistributedLockOptions = {}): DistributedLock => {
    const lock = new DistributedLock({ redis_nodes: started().addresses, ...options })
    ;(testLocks ?? suiteLocks).push(lock)
    return lock
  }
  const closeAll = async (locks: DistributedLock[]): Promise<void> => {
    for (const lock of locks.splice(0)) await lock.close()
  }

  before(async () => {
    cluster = await Cluster.start(size)
    if (setup.lock) shared = newLock(setup.lock)
  })
  after(async () => {
    try {
      await closeAll(suiteLocks)
    } finally {
      await cluster?.stop()
    }
  })
  beforeEach(async () => {
    testLocks = []
    if (setup.flush === 'each') await started().flush()
  })
  afterEach(async () => {
    const made = testLocks ?? []
    testLocks = null
    await closeAll(made)
  })

  return {
    get cluster() {
      return started()
    },
    get lock() {
      if (shared === null) throw new Error('this suite has no shared lock: give useCluster lock options')
      return shared
    },
    newLock,
  }
}

// The code examples of the users' quick reference, as they wrote them; only
// the import path is this package's and each snippet is wrapped in a function
// so the spec can run it.

import { DistributedLock } from '../..';

/** "Basic Lock Usage". */
export async function basicLockUsage(): Promise<void> {
  const lock = new DistributedLock({
    redis_nodes: ['localhost:6379', 'localhost:6380', 'localhost:6381'],
    lock_ttl_ms: 30000,
    retry_count: 3,
    retry_delay_ms: 200,
  });

  // Acquire
  const handle = await lock.acquire('my-lock');
  if (handle) {
    // Do work
    await lock.release(handle);
  }

  await lock.close();
}

/** "With Keep-Alive", with the lock of the basic example. */
export async function withKeepAlive(): Promise<void> {
  const lock = new DistributedLock({
    redis_nodes: ['localhost:6379', 'localhost:6380', 'localhost:6381'],
    lock_ttl_ms: 30000,
    retry_count: 3,
    retry_delay_ms: 200,
  });

  const handle = await lock.acquire('my-lock', 30000);

  if (handle) {
    // Extend every 15 seconds
    const interval = setInterval(async () => {
      await lock.extend(handle, 30000);
    }, 15000);

    try {
      // Do work
    } finally {
      clearInterval(interval);
      await lock.release(handle);
    }
  }

  await lock.close();
}

/** "Environment Variables". */
export async function fromEnvironment(): Promise<void> {
  // In your code
  const lock = new DistributedLock({
    redis_nodes: process.env.REDIS_NODES!.split(','),
    lock_ttl_ms: parseInt(process.env.REDIS_LOCK_TTL_MS || '30000'),
    retry_count: parseInt(process.env.REDIS_RETRY_COUNT || '3'),
    retry_delay_ms: parseInt(process.env.REDIS_RETRY_DELAY_MS || '200'),
  });

  const handle = await lock.acquire('my-lock');
  if (!handle) throw new Error('the environment example did not get the lock');
  await lock.release(handle);
  await lock.close();
}

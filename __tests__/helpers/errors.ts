// What a synchronous call threw, for specs that look at the error itself.

import assert from 'node:assert/strict'

import type { LockError } from '../..'

/** The error `build` throws; fails the test when it throws none. */
export function thrown(build: () => unknown): LockError {
  try {
    build()
  } catch (error) {
    return error as LockError
  }
  assert.fail('accepted')
}

// The ES module entry of `redis-quorum-lock/redlock`: the very classes of
// the CommonJS module (one copy of each, so `instanceof` holds whichever way
// a program loads them), with redlock's default and named exports.

import Redlock from './redlock.js'

export default Redlock
export const { Lock, ExecutionError, ResourceLockedError } = Redlock

// The ESM entry. It re-exports the CommonJS facade rather than being a second
// copy of it, so `import` and `require` in one process share one native
// binding, one set of handles, and `instanceof` agrees across both.

import facade from './index.js'

export const { DistributedLock, LockHandle, resolveNodes } = facade

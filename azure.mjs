// The ES module entry of `redis-quorum-lock/azure`: the very function of
// the CommonJS module.

import azure from './azure.js'

export const { entraId } = azure

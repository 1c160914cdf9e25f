'use strict'

// `redis-quorum-lock/azure`: Microsoft Entra ID credentials for Azure Cache
// for Redis and Azure Managed Redis in one line. A TokenCredential of
// @azure/identity (DefaultAzureCredential, ManagedIdentityCredential, ...)
// becomes a credentials provider for the lock: the access token is the
// password, the object id of the identity the user name, and the token's
// expiry tells the lock when to ask again. Nothing here loads an Azure
// package, nor the native engine: the credential is the caller's.

/** The scope of access tokens for Azure's Redis services. */
const REDIS_SCOPE = 'https://redis.azure.com/.default'

function invalidArg(message) {
  const error = new TypeError(message)
  error.code = 'ERR_INVALID_ARG'
  return error
}

/** A credentials provider that asks `credential` for a token of Azure's Redis scope; see azure.d.ts. */
function entraId(credential, options) {
  if (credential === null || (typeof credential !== 'object' && typeof credential !== 'function') || typeof credential.getToken !== 'function') {
    throw invalidArg('entraId(credential, { objectId }): credential must be a TokenCredential of @azure/identity (an object with getToken), such as new DefaultAzureCredential()')
  }
  if (options === null || typeof options !== 'object') {
    throw invalidArg('entraId(credential, { objectId }): the options with the objectId of the identity are missing')
  }
  for (const key of Object.keys(options)) {
    if (key !== 'objectId') throw invalidArg(`entraId(credential, { objectId }): unknown option '${String(key).slice(0, 64)}'`)
  }
  const { objectId } = options
  if (typeof objectId !== 'string' || objectId.trim() === '') {
    throw invalidArg(
      "entraId(credential, { objectId }): objectId must be the object (principal) id of the identity, as the cache's Redis user of its access policy assignment names it",
    )
  }
  return async () => {
    const token = await credential.getToken(REDIS_SCOPE)
    if (token === null || typeof token !== 'object' || typeof token.token !== 'string' || token.token === '') {
      throw new Error(`the TokenCredential returned no access token for ${REDIS_SCOPE}`)
    }
    return { username: objectId, password: token.token, expiresAt: token.expiresOnTimestamp }
  }
}

module.exports = { entraId }

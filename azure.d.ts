/**
 * Microsoft Entra ID credentials for Azure Cache for Redis and Azure
 * Managed Redis: a credential of `@azure/identity` (an optional peer
 * dependency of this package, installed by you) becomes the lock's
 * `credentials`.
 *
 * @example
 * ```ts
 * import { DefaultAzureCredential } from '@azure/identity'
 * import { DistributedLock } from 'redis-quorum-lock'
 * import { entraId } from 'redis-quorum-lock/azure'
 *
 * const lock = new DistributedLock({
 *   redis_nodes: ['rediss://cache-a.redis.cache.windows.net:6380', 'rediss://cache-b.redis.cache.windows.net:6380', 'rediss://cache-c.redis.cache.windows.net:6380'],
 *   credentials: entraId(new DefaultAzureCredential(), { objectId: process.env.AZURE_OBJECT_ID! }),
 * })
 * ```
 * @packageDocumentation
 */

import type { CredentialsProvider } from './index.js'

/** An access token, as `@azure/core-auth` has it. */
export interface AccessToken {
  /** The token: the password of the connection. */
  token: string
  /** When it expires, in epoch ms. */
  expiresOnTimestamp: number
}

/**
 * What {@link entraId} takes: any credential of `@azure/identity`
 * (`DefaultAzureCredential`, `ManagedIdentityCredential`,
 * `WorkloadIdentityCredential`, ...), typed by its shape so that these
 * types need no Azure package.
 */
export interface TokenCredential {
  getToken(scopes: string | string[]): Promise<AccessToken | null>
}

/** The options of {@link entraId}. */
export interface EntraIdOptions {
  /**
   * The object (principal) id of the identity the token is for: the name of
   * its Redis user in the cache's access policy assignment.
   */
  objectId: string
}

/**
 * Credentials from Microsoft Entra ID: asks `credential` for a token of the
 * scope `https://redis.azure.com/.default` whenever the lock needs
 * credentials, and returns it as the password, with `objectId` as the user
 * name and the token's expiry as `expiresAt` (so the lock asks again ahead
 * of it and authenticates its connections again in place). A credential
 * that fails, or returns no token, costs the nodes their votes with
 * "credentials provider failed: ..." and its message.
 * @throws {TypeError} with code `ERR_INVALID_ARG` when `credential` has no
 *   `getToken` or `objectId` is not a non-empty string.
 */
export declare function entraId(credential: TokenCredential, options: EntraIdOptions): CredentialsProvider

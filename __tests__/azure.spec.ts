// redis-quorum-lock/azure: entraId() turns a TokenCredential into the
// lock's credentials, asking for Azure's Redis scope, with the object id as
// the user name and the token's expiry passed through. A fake credential
// stands in for @azure/identity, and ACL users on real nodes for the cache's
// Entra ID users. Neither entry loads the other.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { before, describe, test } from 'node:test'

import type { LockError } from '..'
import { entraId, type AccessToken, type TokenCredential } from '../azure'
import { thrown } from './helpers/errors'
import { useCluster } from './helpers/fixture'

const ROOT = path.resolve(__dirname, '..')
const OBJECT_ID = '0c3f6b7e-1d2a-4e5f-9a8b-7c6d5e4f3a2b'
const TOKEN = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIwYzNmNmI3ZSJ9.c2lnbmF0dXJl'

/** A credential of @azure/identity's shape (its getToken takes options too), returning what `answer` gives. */
class FakeCredential {
  readonly asked: (string | string[])[] = []

  constructor(private readonly answer: () => Promise<AccessToken | null>) {}

  getToken(scopes: string | string[], _options?: { abortSignal?: AbortSignal; tenantId?: string }): Promise<AccessToken | null> {
    this.asked.push(scopes)
    return this.answer()
  }
}

describe('redis-quorum-lock/azure', () => {
  test('entraId asks for the Redis scope and returns the token as the password, the object id as the user, and its expiry', async () => {
    const expiresOnTimestamp = Date.now() + 3_600_000
    const credential = new FakeCredential(async () => ({ token: TOKEN, expiresOnTimestamp }))
    const provider = entraId(credential, { objectId: OBJECT_ID })
    assert.deepEqual(await provider(), { username: OBJECT_ID, password: TOKEN, expiresAt: expiresOnTimestamp })
    assert.deepEqual(credential.asked, ['https://redis.azure.com/.default'])
  })

  test('entraId refuses what is not a credential or has no object id, with ERR_INVALID_ARG', () => {
    const credential = new FakeCredential(async () => null)
    const bad: [() => unknown, RegExp][] = [
      [() => entraId(null as never, { objectId: OBJECT_ID }), /credential must be a TokenCredential/],
      [() => entraId({ token: TOKEN } as never, { objectId: OBJECT_ID }), /credential must be a TokenCredential/],
      [() => entraId(credential, undefined as never), /options with the objectId/],
      [() => entraId(credential, {} as never), /objectId must be the object \(principal\) id/],
      [() => entraId(credential, { objectId: ' ' }), /objectId must be/],
      [() => entraId(credential, { objectId: OBJECT_ID, scope: 'x' } as never), /unknown option 'scope'/],
    ]
    for (const [call, message] of bad) {
      const error = thrown(call)
      assert.equal(error.code, 'ERR_INVALID_ARG')
      assert.match(error.message, message)
    }
  })

  test('the entries stay apart: the main one loads nothing of Azure, the Azure one nothing native', () => {
    const run = (source: string) => {
      const child = spawnSync(process.execPath, ['-e', source], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 })
      assert.equal(child.status, 0, child.stderr)
      return JSON.parse(child.stdout) as string[]
    }
    const loaded = "JSON.stringify(Object.keys(require.cache).map((file) => require('node:path').basename(file)))"
    assert.ok(!run(`require('redis-quorum-lock'); console.log(${loaded})`).includes('azure.js'))
    const azure = run(`require('redis-quorum-lock/azure'); console.log(${loaded})`)
    assert.deepEqual(azure, ['azure.js'])
    const esm = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', "import { entraId } from 'redis-quorum-lock/azure'; import { createRequire } from 'node:module'; console.log(entraId === createRequire(import.meta.url)('redis-quorum-lock/azure').entraId)"],
      { cwd: ROOT, encoding: 'utf8', timeout: 30_000 },
    )
    assert.equal(esm.stdout.trim(), 'true', esm.stderr)
  })

  describe('against real nodes', () => {
    const t = useCluster(3)

    before(async () => {
      for (const node of t.cluster.nodes) {
        await node.redis().call('ACL', 'SETUSER', OBJECT_ID, 'reset', 'on', `>${TOKEN}`, '~redlock:*', '&redlock:*', '+@all')
      }
    })

    test('a lock with entraId credentials acquires as the object id', async () => {
      const credential = new FakeCredential(async () => ({ token: TOKEN, expiresOnTimestamp: Date.now() + 3_600_000 }))
      const typed: TokenCredential = credential
      const lock = t.newLock({ credentials: entraId(typed, { objectId: OBJECT_ID }) })
      const handle = await lock.acquire('azure-one', 10_000)
      assert.ok(handle)
      for (const node of t.cluster.nodes) {
        const list = (await node.redis().call('CLIENT', 'LIST')) as string
        assert.match(list, new RegExp(`user=${OBJECT_ID}`))
      }
      assert.equal(await lock.release(handle), true)
      assert.equal(credential.asked.length, 1, 'one token for the three connections')
    })

    test('a credential that fails or returns no token costs every node its vote, with its message', async () => {
      const cases: [() => Promise<AccessToken | null>, RegExp][] = [
        [() => Promise.reject(new Error('ManagedIdentityCredential: no managed identity endpoint found')), /^credentials provider failed: ManagedIdentityCredential: no managed identity endpoint found$/],
        [async () => null, /^credentials provider failed: the TokenCredential returned no access token for https:\/\/redis\.azure\.com\/\.default$/],
        [async () => ({ token: `${TOKEN}x`, expiresOnTimestamp: Date.now() + 60_000 }), /^authentication with the credentials provider's user and password failed/],
      ]
      for (const [answer, message] of cases) {
        const lock = t.newLock({ retry_count: 0, credentials: entraId(new FakeCredential(answer), { objectId: OBJECT_ID }) })
        let error: LockError | null = null
        await lock.acquire('azure-bad', 10_000).catch((e: LockError) => {
          error = e
        })
        const failed = error as unknown as LockError
        assert.equal(failed?.code, 'ERR_QUORUM_UNAVAILABLE')
        for (const entry of failed.nodeErrors ?? []) assert.match(entry.message, message)
        assert.ok(!failed.message.includes(TOKEN.slice(-12)), failed.message)
        await lock.close()
      }
    })
  })
})

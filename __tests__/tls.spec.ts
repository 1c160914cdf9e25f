import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'

import { DistributedLock, type LockError } from '..'
import { Cluster } from './helpers/redis'
import { makeCertificates } from './helpers/tls'

const PASSWORD = 'tls-s3cret-Pa55'

describe('TLS with an ACL user', () => {
  let dir: string
  let cluster: Cluster

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rql-tls-'))
    const tls = makeCertificates(dir)
    // rustls reads the trusted roots from SSL_CERT_FILE, as for any private CA.
    process.env.SSL_CERT_FILE = tls.ca
    cluster = await Cluster.start(3, {
      tls,
      args: ['--user', 'default', 'off', '--user', 'locker', 'on', `>${PASSWORD}`, '~*', '&*', '+@all'],
    })
  })
  after(async () => {
    await cluster.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  test('acquires, extends and releases through rediss:// with a user and password', async () => {
    const nodes = cluster.nodes.map((node) => `rediss://locker:${PASSWORD}@localhost:${node.port}`)
    const lock = new DistributedLock({ redis_nodes: nodes, retry_count: 0 })
    const handle = await lock.acquire('secure', 10_000)
    assert.ok(handle, 'acquired over TLS')
    assert.equal(await lock.extend(handle, 20_000), true)
    assert.equal(await lock.release(handle), true)
    await lock.close()
  })

  test('node objects with tls: true reach the same nodes', async () => {
    const nodes = cluster.nodes.map((node) => ({ host: 'localhost', port: node.port, username: 'locker', password: PASSWORD, ssl: true }))
    const lock = new DistributedLock({ redis_nodes: nodes, retry_count: 0 })
    const handle = await lock.acquire('secure-objects', 10_000)
    assert.ok(handle)
    assert.equal(await handle.release(), true)
    await lock.close()
  })

  test('a wrong password fails every node and appears in no message', async () => {
    const wrong = 'wrong-Pa55word-x'
    const nodes = cluster.nodes.map((node) => `rediss://locker:${wrong}@localhost:${node.port}`)
    const lock = new DistributedLock({ redis_nodes: nodes, retry_count: 0 })
    const error = (await lock.acquire('secure', 10_000).then(() => assert.fail('acquired'), (e: unknown) => e)) as LockError
    assert.equal(error.code, 'ERR_QUORUM_UNAVAILABLE')
    // The verdict comes as soon as two of three failed: a majority can no longer answer.
    assert.ok((error.nodeErrors?.length ?? 0) >= 2, `${error.nodeErrors?.length} node errors`)
    const text = JSON.stringify({ message: error.message, stack: error.stack, nodeErrors: error.nodeErrors })
    assert.doesNotMatch(text, new RegExp(wrong))
    assert.doesNotMatch(text, new RegExp(PASSWORD))
    assert.match(error.nodeErrors?.[0].message ?? '', /WRONGPASS|auth/i)
    await lock.close()
  })

  test('plain redis:// against a TLS port fails instead of hanging', async () => {
    const nodes = cluster.nodes.map((node) => `redis://locker:${PASSWORD}@localhost:${node.port}`)
    const lock = new DistributedLock({ redis_nodes: nodes, retry_count: 0, command_timeout_ms: 300 })
    await assert.rejects(lock.acquire('plain', 10_000), (error: LockError) => {
      assert.equal(error.code, 'ERR_QUORUM_UNAVAILABLE')
      assert.doesNotMatch(error.message, new RegExp(PASSWORD))
      return true
    })
    await lock.close()
  })
})

// The users' quick-reference code compiles against index.d.ts (tsc --noEmit
// covers __tests__/seed) and runs. Its snippets name the user's own cluster
// on 6379-6381, which tests never touch, so the spec runs a copy of the file
// with only those addresses replaced by this test's nodes.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'

import { useCluster } from './helpers/fixture'

describe("the quick reference's code examples", () => {
  const t = useCluster(3)
  let dir: string

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rql-seed-'))
    let source = readFileSync(path.join(__dirname, 'seed', 'quick-reference.ts'), 'utf8')
    source = source.replace("from '../..'", `from ${JSON.stringify(path.resolve(__dirname, '..'))}`)
    for (const [i, port] of [6379, 6380, 6381].entries()) {
      source = source.replaceAll(`'localhost:${port}'`, `'${t.cluster.addresses[i]}'`)
    }
    writeFileSync(path.join(dir, 'quick-reference.ts'), source)
  })
  after(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  for (const example of ['basicLockUsage', 'withKeepAlive', 'fromEnvironment']) {
    test(`${example} runs and leaves no lock behind`, async () => {
      const run = spawnSync(
        process.execPath,
        ['--import', 'tsx', '-e', `require(${JSON.stringify(path.join(dir, 'quick-reference.ts'))}).${example}().catch((e) => { console.error(e); process.exit(1) })`],
        { env: { ...process.env, REDIS_NODES: t.cluster.addresses.join(',') }, encoding: 'utf8', timeout: 20_000 },
      )
      assert.equal(run.status, 0, run.stderr)
      await t.cluster.settled('redlock:my-lock', [null, null, null])
    })
  }
})

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'

const run = promisify(execFile)
const ROOT = path.join(__dirname, '..')
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')

/** The package's own manifest: its `exports` map and `files` are what a consumer gets. */
const MANIFEST = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
const USAGE = readFileSync(path.join(__dirname, 'redlock', 'usage.ts'), 'utf8')
const OUR_IMPORT = "from '../../redlock.js'"

/**
 * A consumer project with the package installed under its name (the files
 * its manifest ships linked, with this checkout's binary, and its manifest's
 * `exports` map) and ioredis, npm redlock and @types/node beside it.
 */
function consumer(dir: string): void {
  const installed = path.join(dir, 'node_modules', 'redis-quorum-lock')
  mkdirSync(installed, { recursive: true })
  for (const file of [...MANIFEST.files, ...readdirSync(ROOT).filter((name) => name.endsWith('.node'))]) {
    symlinkSync(path.join(ROOT, file), path.join(installed, file))
  }
  const { name, main, types, exports } = MANIFEST
  writeFileSync(path.join(installed, 'package.json'), JSON.stringify({ name, version: MANIFEST.version, main, types, exports, repository: MANIFEST.repository }))
  for (const name of ['ioredis', 'redlock', 'typescript']) {
    symlinkSync(path.join(ROOT, 'node_modules', name), path.join(dir, 'node_modules', name))
  }
  mkdirSync(path.join(dir, 'node_modules', '@types'))
  symlinkSync(path.join(ROOT, 'node_modules', '@types', 'node'), path.join(dir, 'node_modules', '@types', 'node'))
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true }))
}

/** How a TypeScript project may resolve and load modules: node's own, CommonJS without interop helpers, a bundler's. */
const MODULES = {
  nodenext: { module: 'nodenext', moduleResolution: 'nodenext' },
  commonjs: { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: false },
  bundler: { module: 'preserve', moduleResolution: 'bundler' },
}

function tsconfig(files: string[], modules: object, paths?: Record<string, string[]>): string {
  return JSON.stringify({
    compilerOptions: {
      target: 'es2022',
      ...modules,
      strict: true,
      noEmit: true,
      skipLibCheck: false,
      types: ['node'],
      ...(paths ? { baseUrl: '.', paths } : {}),
    },
    files,
  })
}

async function tsc(dir: string, project: string): Promise<void> {
  await run(process.execPath, [TSC, '-p', project], { cwd: dir }).catch((error: { stdout: string }) => {
    assert.fail(`tsc -p ${project}:\n${error.stdout}`)
  })
}

describe('redlock: the package subpath for CommonJS, ES modules and TypeScript', () => {
  let dir: string

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'rql-redlock-consumer-'))
    consumer(dir)
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  test('require() and import of \'redis-quorum-lock/redlock\' give the same classes, the way redlock@5 exports them', async () => {
    writeFileSync(path.join(dir, 'load.mjs'), `
      import { createRequire } from 'node:module'
      import Redlock, { Lock, ExecutionError, ResourceLockedError } from 'redis-quorum-lock/redlock'
      const require = createRequire(import.meta.url)
      const { default: required, ExecutionError: requiredError } = require('redis-quorum-lock/redlock')
      console.log(JSON.stringify({
        esm: typeof Redlock === 'function' && Redlock.name,
        named: [Lock, ExecutionError, ResourceLockedError].map((c) => c.name),
        same: required === Redlock && requiredError === ExecutionError && require('redis-quorum-lock/redlock') === Redlock,
        distributedLock: typeof require('redis-quorum-lock').DistributedLock,
      }))
    `)
    const { stdout } = await run(process.execPath, ['load.mjs'], { cwd: dir })
    assert.deepEqual(JSON.parse(stdout), {
      esm: 'Redlock',
      named: ['Lock', 'ExecutionError', 'ResourceLockedError'],
      same: true,
      distributedLock: 'function',
    })
  })

  test('redlock README code type-checks (strict) against the subpath from CommonJS and from an ES module, and against npm redlock\'s own typings', async () => {
    assert.ok(USAGE.includes(OUR_IMPORT), 'usage.ts imports the module by path')
    writeFileSync(path.join(dir, 'usage.ts'), USAGE.replace(OUR_IMPORT, "from 'redis-quorum-lock/redlock'"))
    // In an ES module ioredis's class is its named export (its default is the CommonJS module).
    writeFileSync(
      path.join(dir, 'usage.mts'),
      USAGE.replace(OUR_IMPORT, "from 'redis-quorum-lock/redlock'").replace("import Client from 'ioredis'", "import { Redis as Client } from 'ioredis'"),
    )
    writeFileSync(path.join(dir, 'tsconfig.json'), tsconfig(['usage.ts', 'usage.mts'], MODULES.nodenext))
    // Without interop helpers, `import Redlock from` takes the module's `default`.
    writeFileSync(path.join(dir, 'tsconfig.commonjs.json'), tsconfig(['usage.ts'], MODULES.commonjs))
    writeFileSync(path.join(dir, 'tsconfig.bundler.json'), tsconfig(['usage.ts', 'usage.mts'], MODULES.bundler))

    // The same code before the migration: npm redlock's exports map names
    // no types, so its declaration file is given by path.
    writeFileSync(path.join(dir, 'before.ts'), USAGE.replace(OUR_IMPORT, "from 'redlock'"))
    writeFileSync(path.join(dir, 'tsconfig.before.json'), tsconfig(['before.ts'], MODULES.nodenext, { redlock: ['node_modules/redlock/dist/index.d.ts'] }))

    const projects = ['tsconfig.json', 'tsconfig.commonjs.json', 'tsconfig.bundler.json', 'tsconfig.before.json']
    for (const project of projects) await tsc(dir, project)
  })
})

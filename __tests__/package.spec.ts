// What a user gets from `npm install redis-quorum-lock`: the two tarballs
// `npm run pack:local` writes (the main package and this host's platform
// package) installed into an empty project outside this checkout, with no
// Rust toolchain on PATH. Only the TypeScript compiler and @types/node come
// from the checkout, as the user's own would.

import assert from 'node:assert/strict'
import { spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'

import { useCluster } from './helpers/fixture'

const ROOT = path.resolve(__dirname, '..')
const DIST = path.join(ROOT, 'dist')
const NAME = 'redis-quorum-lock'
const VERSION: string = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version
/** Every platform package the README promises. */
const PLATFORM_PACKAGES = ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'linux-arm64-musl', 'darwin-x64', 'darwin-arm64', 'win32-x64-msvc'].map(
  (platform) => `${NAME}-${platform}`,
)
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
const TYPE_ROOTS = path.join(ROOT, 'node_modules', '@types')

function onPath(name: string, dirs: string[]): string | undefined {
  return dirs.map((dir) => path.join(dir, name)).find((file) => existsSync(file))
}

/**
 * The environment of a user's shell without a Rust toolchain: no PATH entry
 * holding cargo or rustc, none of this checkout's npm settings, not a child
 * of the test runner.
 */
function userEnvironment(binDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('npm_') || ['NODE_OPTIONS', 'NODE_PATH', 'NODE_TEST_CONTEXT', 'CARGO_HOME', 'RUSTUP_HOME', 'RUSTUP_TOOLCHAIN'].includes(key)) continue
    env[key] = value
  }
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter((dir) => dir !== '' && !onPath('cargo', [dir]) && !onPath('rustc', [dir]))
  const npm = onPath('npm', (process.env.PATH ?? '').split(path.delimiter))
  assert.ok(npm, 'npm is on PATH')
  mkdirSync(binDir)
  symlinkSync(process.execPath, path.join(binDir, 'node'))
  symlinkSync(npm, path.join(binDir, 'npm'))
  env.PATH = [binDir, ...dirs].join(path.delimiter)
  return env
}

function entries(tarball: string): string[] {
  const list = spawnSync('tar', ['-tzf', tarball], { encoding: 'utf8', timeout: 30_000 })
  assert.equal(list.status, 0, list.stderr)
  return list.stdout.trim().split('\n').sort()
}

function ok(run: SpawnSyncReturns<string>, what: string): string {
  assert.equal(run.status, 0, `${what} failed (${run.error?.message ?? `exit ${run.status}`}):\n${run.stdout}\n${run.stderr}`)
  return run.stdout
}

describe('the packed package, installed as a user installs it', () => {
  let work: string
  let project: string
  let env: NodeJS.ProcessEnv
  let mainTarball: string
  let platformTarball: string
  let platformPackage: string
  const t = useCluster(3)

  /** Runs `args` with node in the user's project. */
  function node(args: string[], extraEnv: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
    return spawnSync(process.execPath, args, { cwd: project, env: { ...env, ...extraEnv }, encoding: 'utf8', timeout: 30_000 })
  }

  /** The quick reference as a user's file importing the package, its snippets aimed at `addresses`. */
  function quickReference(addresses: string[]): string {
    let source = readFileSync(path.join(__dirname, 'seed', 'quick-reference.ts'), 'utf8').replace("from '../..'", `from '${NAME}'`)
    assert.ok(source.includes(`from '${NAME}'`), 'the quick reference imports the package')
    for (const [i, port] of [6379, 6380, 6381].entries()) source = source.replaceAll(`'localhost:${port}'`, `'${addresses[i]}'`)
    return source
  }

  function tsc(config: object, name: string): SpawnSyncReturns<string> {
    writeFileSync(path.join(project, name), JSON.stringify(config))
    return node([TSC, '-p', name])
  }

  before(async () => {
    // Packs (building first) unless dist/ holds the tarballs of the checkout as it is.
    ok(spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'pack-local.mjs'), '--if-stale'], { cwd: ROOT, encoding: 'utf8', timeout: 15 * 60_000 }), 'npm run pack:local')
    const tarballs = readdirSync(DIST).filter((name) => name.endsWith('.tgz'))
    assert.equal(tarballs.length, 2, `dist/ holds ${tarballs.join(', ')}`)
    mainTarball = path.join(DIST, `${NAME}-${VERSION}.tgz`)
    assert.ok(tarballs.includes(path.basename(mainTarball)), `dist/ holds ${tarballs.join(', ')}`)
    platformTarball = path.join(DIST, tarballs.find((name) => name !== path.basename(mainTarball))!)
    platformPackage = path.basename(platformTarball).slice(0, -`-${VERSION}.tgz`.length)

    work = mkdtempSync(path.join(os.tmpdir(), 'rql-consumer-'))
    project = path.join(work, 'project')
    mkdirSync(project)
    env = userEnvironment(path.join(work, 'bin'))
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'keeper', version: '1.0.0', private: true }))
    const rust = spawnSync('sh', ['-c', 'command -v cargo || command -v rustc'], { env, encoding: 'utf8', timeout: 10_000 })
    assert.notEqual(rust.status, 0, `a Rust tool is still on PATH: ${rust.stdout}`)
    const install = spawnSync('npm', ['install', '--offline', '--no-audit', '--no-fund', mainTarball, platformTarball], {
      cwd: project,
      env,
      encoding: 'utf8',
      timeout: 120_000,
    })
    ok(install, 'npm install of the two tarballs')
  })

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true })
  })

  test('the main package holds the facade, its loaders, the types, README and LICENSE, and no binary or source', () => {
    assert.deepEqual(
      entries(mainTarball),
      ['LICENSE', 'README.md', 'azure.d.mts', 'azure.d.ts', 'azure.js', 'azure.mjs', 'binding.d.ts', 'binding.js', 'index.d.mts', 'index.d.ts', 'index.js', 'index.mjs', 'native.js', 'package.json', 'redlock.d.mts', 'redlock.d.ts', 'redlock.js', 'redlock.mjs', 'telemetry.js'].map((file) => `package/${file}`),
    )
  })

  test('the main manifest has no install script and lists every platform package at its own version', () => {
    const manifest = JSON.parse(readFileSync(path.join(project, 'node_modules', NAME, 'package.json'), 'utf8'))
    assert.equal(manifest.version, VERSION)
    for (const script of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(manifest.scripts?.[script], undefined, script)
    assert.deepEqual(manifest.optionalDependencies, Object.fromEntries(PLATFORM_PACKAGES.map((name) => [name, VERSION])))
    assert.ok(PLATFORM_PACKAGES.includes(platformPackage), `${platformPackage} is one of the platform packages`)
  })

  test("the platform package holds only this host's binary, marked with its os, cpu and libc", () => {
    const platform = platformPackage.slice(NAME.length + 1)
    const binary = `${NAME}.${platform}.node`
    assert.deepEqual(entries(platformTarball), ['README.md', binary, 'package.json'].map((file) => `package/${file}`).sort())
    const manifest = JSON.parse(readFileSync(path.join(project, 'node_modules', platformPackage, 'package.json'), 'utf8'))
    assert.equal(manifest.version, VERSION)
    assert.equal(manifest.main, binary)
    assert.deepEqual(manifest.os, [process.platform])
    assert.deepEqual(manifest.cpu, [process.arch])
    if (process.platform === 'linux') assert.deepEqual(manifest.libc, [platform.endsWith('-musl') ? 'musl' : 'glibc'])
  })

  test('require() loads the installed package and its binary, nothing of this checkout', () => {
    const out = ok(
      node([
        '-e',
        `const lib = require('${NAME}')
         const nodes = lib.resolveNodes({ redis_nodes: ['node-a:7000'] })
         console.log(JSON.stringify({ entry: require.resolve('${NAME}'), binding: require.resolve('${platformPackage}'), nodes, classes: [typeof lib.DistributedLock, typeof lib.LockHandle] }))`,
      ]),
      'require',
    )
    const seen = JSON.parse(out)
    assert.equal(seen.entry, path.join(project, 'node_modules', NAME, 'index.js'))
    assert.ok(seen.binding.startsWith(path.join(project, 'node_modules', platformPackage)), seen.binding)
    assert.equal(seen.nodes[0].label, 'node-a:7000')
    assert.deepEqual(seen.classes, ['function', 'function'])
  })

  test('an .mjs file imports the named exports, the same objects require() gives', () => {
    writeFileSync(
      path.join(project, 'esm.mjs'),
      `import { createRequire } from 'node:module'
import * as esm from '${NAME}'
import { DistributedLock, LockHandle, resolveNodes } from '${NAME}'
const cjs = createRequire(import.meta.url)('${NAME}')
console.log(JSON.stringify({
  names: Object.keys(esm).sort(),
  cjsNames: Object.keys(cjs).sort(),
  same: Object.keys(cjs).every((name) => esm[name] === cjs[name]),
  named: [DistributedLock, LockHandle, resolveNodes].map((value) => typeof value),
}))
`,
    )
    const seen = JSON.parse(ok(node(['esm.mjs']), 'the .mjs file'))
    assert.deepEqual(seen.names, seen.cjsNames, 'the ESM entry exports what the CommonJS entry does')
    assert.equal(seen.same, true)
    assert.deepEqual(seen.named, ['function', 'function', 'function'])
  })

  test('the redlock subpath loads from the installed package through require() and import, as one set of classes', () => {
    writeFileSync(
      path.join(project, 'redlock.mjs'),
      `import { createRequire } from 'node:module'
import Redlock, { ExecutionError, ResourceLockedError } from '${NAME}/redlock'
const cjs = createRequire(import.meta.url)('${NAME}/redlock')
console.log(JSON.stringify({
  entry: createRequire(import.meta.url).resolve('${NAME}/redlock'),
  same: Redlock === cjs && ExecutionError === cjs.ExecutionError && ResourceLockedError === cjs.ResourceLockedError,
  kinds: [Redlock, ExecutionError, ResourceLockedError].map((value) => typeof value),
}))
`,
    )
    const seen = JSON.parse(ok(node(['redlock.mjs']), 'the redlock subpath'))
    assert.equal(seen.entry, path.join(project, 'node_modules', NAME, 'redlock.js'))
    assert.equal(seen.same, true)
    assert.deepEqual(seen.kinds, ['function', 'function', 'function'])
  })

  test('installed without @opentelemetry/api, the telemetry option fails saying what to install', () => {
    assert.equal(existsSync(path.join(project, 'node_modules', '@opentelemetry')), false, 'the optional peer is not installed')
    writeFileSync(
      path.join(project, 'telemetry.cjs'),
      `const { DistributedLock } = require('${NAME}')
try {
  new DistributedLock({ redis_nodes: ['127.0.0.1:1'], telemetry: true })
  console.log(JSON.stringify({ thrown: false }))
} catch (error) {
  console.log(JSON.stringify({ thrown: true, code: error.code, message: error.message }))
}
`,
    )
    const seen = JSON.parse(ok(node(['telemetry.cjs']), 'the telemetry option without the package'))
    assert.equal(seen.code, 'ERR_INVALID_ARG')
    assert.match(seen.message, /npm install @opentelemetry\/api/)
  })

  test('the azure subpath loads from the installed package through require() and import, without @azure/identity, and type-checks as the README uses it', () => {
    writeFileSync(
      path.join(project, 'azure.mjs'),
      `import { createRequire } from 'node:module'
import { entraId } from '${NAME}/azure'
const require = createRequire(import.meta.url)
console.log(JSON.stringify({
  entry: require.resolve('${NAME}/azure'),
  same: entraId === require('${NAME}/azure').entraId,
  kind: typeof entraId,
}))
`,
    )
    const seen = JSON.parse(ok(node(['azure.mjs']), 'the azure subpath'))
    assert.equal(seen.entry, path.join(project, 'node_modules', NAME, 'azure.js'))
    assert.deepEqual([seen.same, seen.kind], [true, 'function'])
    // @azure/identity's credential as its typings have it, which the user installs.
    const source = `import { DistributedLock } from '${NAME}'
import { entraId } from '${NAME}/azure'

interface GetTokenOptions { abortSignal?: AbortSignal; tenantId?: string; claims?: string }
interface AccessToken { token: string; expiresOnTimestamp: number; refreshAfterTimestamp?: number; tokenType?: 'Bearer' | 'pop' }
declare class DefaultAzureCredential { getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken> }

export const lock = new DistributedLock({
  redis_nodes: ['rediss://cache.redis.cache.windows.net:6380'],
  credentials: entraId(new DefaultAzureCredential(), { objectId: '00000000-0000-0000-0000-000000000000' }),
})
`
    writeFileSync(path.join(project, 'azure-usage.ts'), source)
    writeFileSync(path.join(project, 'azure-usage-esm.mts'), source)
    const base = { target: 'es2022', strict: true, skipLibCheck: false, noEmit: true, typeRoots: [TYPE_ROOTS], types: ['node'] }
    ok(tsc({ compilerOptions: { ...base, module: 'nodenext' }, files: ['azure-usage.ts', 'azure-usage-esm.mts'] }, 'tsconfig.azure.json'), 'tsc with module nodenext')
    ok(tsc({ compilerOptions: { ...base, module: 'esnext', moduleResolution: 'bundler' }, files: ['azure-usage.ts'] }, 'tsconfig.azure-bundler.json'), 'tsc with moduleResolution bundler')
  })

  test('tsc --strict accepts the quick reference with module nodenext (CommonJS and ESM files) and moduleResolution bundler', () => {
    const source = quickReference(['localhost:6379', 'localhost:6380', 'localhost:6381'])
    writeFileSync(path.join(project, 'quick-reference.ts'), source)
    writeFileSync(path.join(project, 'quick-reference-esm.mts'), source)
    const base = { target: 'es2022', strict: true, skipLibCheck: false, noEmit: true, typeRoots: [TYPE_ROOTS], types: ['node'] }
    const nodenext = tsc({ compilerOptions: { ...base, module: 'nodenext', traceResolution: true }, files: ['quick-reference.ts', 'quick-reference-esm.mts'] }, 'tsconfig.nodenext.json')
    ok(nodenext, 'tsc with module nodenext')
    for (const types of ['index.d.ts', 'index.d.mts']) {
      assert.ok(nodenext.stdout.includes(`'${NAME}' was successfully resolved to '${path.join(project, 'node_modules', NAME, types)}'`), `nodenext resolved ${types}`)
    }
    const bundler = tsc({ compilerOptions: { ...base, module: 'esnext', moduleResolution: 'bundler', traceResolution: true }, files: ['quick-reference.ts'] }, 'tsconfig.bundler.json')
    ok(bundler, 'tsc with moduleResolution bundler')
    assert.ok(bundler.stdout.includes(`'${NAME}' was successfully resolved to '${path.join(project, 'node_modules', NAME, 'index.d.mts')}'`), 'bundler resolved index.d.mts')
  })

  test('the types resolve for every kind of consumer (arethetypeswrong)', () => {
    ok(spawnSync(process.execPath, [path.join(ROOT, 'node_modules', '@arethetypeswrong', 'cli', 'dist', 'index.js'), mainTarball], { cwd: work, env, encoding: 'utf8', timeout: 60_000 }), 'attw')
  })

  test('the quick reference, compiled as a user compiles it, runs against real nodes and leaves no lock behind', async () => {
    const source = quickReference(t.cluster.addresses)
    writeFileSync(path.join(project, 'quick-reference.ts'), source)
    writeFileSync(path.join(project, 'quick-reference-esm.mts'), source)
    const emit = { target: 'es2022', module: 'nodenext', strict: true, outDir: 'out', typeRoots: [TYPE_ROOTS], types: ['node'] }
    ok(tsc({ compilerOptions: emit, files: ['quick-reference.ts', 'quick-reference-esm.mts'] }, 'tsconfig.emit.json'), 'tsc emit')
    for (const example of ['basicLockUsage', 'withKeepAlive', 'fromEnvironment']) {
      for (const [entry, loader] of [['./out/quick-reference.js', 'require'], ['./out/quick-reference-esm.mjs', 'import']]) {
        const script = loader === 'require' ? `require('${entry}').${example}()` : `import('${entry}').then((m) => m.${example}())`
        ok(node(['-e', `${script}.catch((error) => { console.error(error); process.exit(1) })`], { REDIS_NODES: t.cluster.addresses.join(',') }), `${example} through ${loader}`)
        await t.cluster.settled('redlock:my-lock', [null, null, null])
      }
    }
  })

  test('without the platform package, require() and import fail with a message naming it, the packages that exist, and how to build', () => {
    const installed = path.join(project, 'node_modules', platformPackage)
    const hidden = path.join(work, 'hidden-platform-package')
    const firstLine = new RegExp(`^Error: ${NAME} ${VERSION.replaceAll('.', '\\.')}: no native binary loaded for this machine; it looked for the package ${platformPackage}\\.$`, 'm')
    writeFileSync(path.join(project, 'import-only.mjs'), `import { DistributedLock } from '${NAME}'\nconsole.log(typeof DistributedLock)\n`)
    renameSync(installed, hidden)
    try {
      const required = JSON.parse(
        ok(node(['-e', `try { require('${NAME}'); console.log('null') } catch (error) { console.log(JSON.stringify({ message: error.message, cause: String(error.cause?.message) })) }`]), 'require'),
      )
      assert.ok(required, 'require() failed')
      assert.match(`Error: ${required.message}`, firstLine)
      for (const name of PLATFORM_PACKAGES) assert.ok(required.message.includes(name), `names ${name}`)
      assert.match(required.message, /To build from source .*Rust toolchain.*git clone .*npm ci.*NAPI_RS_NATIVE_LIBRARY_PATH/)
      assert.match(required.cause, /Cannot find native binding/, "napi-rs's error stays as the cause")

      // Node reports a CommonJS module's throw during an ESM import as the process's own uncaught error.
      const imported = node(['import-only.mjs'])
      assert.notEqual(imported.status, 0, imported.stdout)
      assert.match(imported.stderr, firstLine)
      assert.ok(imported.stderr.includes(required.message), 'import fails with the same message')
    } finally {
      renameSync(hidden, installed)
    }
  })
})

// `npm run pack:local`: builds the release addon for this machine and writes
// to dist/ what a release publishes for it: the main package's tarball and
// this host's platform package's, at the same version.
//
// The release workflow runs `napi artifacts` and `napi prepublish` over the
// binaries of every target in napi.targets. Both refuse to run with a target's
// binary missing, and one machine builds only its own, so here they run in a
// staged copy whose napi config names this host alone: the platform package
// then passes the same checks as in a release. The one thing that config
// narrows is the main package's optionalDependencies, which are widened again
// to every target, the way `napi prepublish` writes them. The release workflow
// makes the same changes to the manifest it publishes.

import { execFileSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { readNapiConfig } from '@napi-rs/cli'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dist = path.join(root, 'dist')
const napi = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')

/** Runs a command to completion; its output goes to this process's stderr unless captured. */
function run(command, args, cwd, { capture = false } = {}) {
  return execFileSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', capture ? 'pipe' : process.stderr, 'inherit'] })
}

run('npm', ['run', 'build'], root)

const host = /^host: (\S+)$/m.exec(run('rustc', ['-vV'], root, { capture: true }))?.[1]
const { targets, packageName, binaryName, packageJson } = await readNapiConfig(path.join(root, 'package.json'))
const target = targets.find((t) => t.triple === host)
if (target === undefined) {
  throw new Error(`this machine (${host}) is not in napi.targets (${targets.map((t) => t.triple).join(', ')}): nothing to pack for it`)
}
const binary = `${binaryName}.${target.platformArchABI}.node`

const work = mkdtempSync(path.join(os.tmpdir(), 'rql-pack-'))
try {
  const stage = path.join(work, 'package')
  const artifacts = path.join(work, 'artifacts')
  const hostConfig = path.join(work, 'napi.host.json')

  // npm's own list of what it would pack from the checkout.
  const [{ files }] = JSON.parse(run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], root, { capture: true }))
  for (const { path: file } of files) cpSync(path.join(root, file), path.join(stage, file))
  cpSync(path.join(root, 'npm', target.platformArchABI), path.join(stage, 'npm', target.platformArchABI), { recursive: true })
  mkdirSync(artifacts)
  cpSync(path.join(root, binary), path.join(artifacts, binary))
  writeFileSync(hostConfig, JSON.stringify({ ...packageJson.napi, targets: [host] }))

  run(process.execPath, [napi, 'artifacts', '--config-path', hostConfig, '--output-dir', artifacts, '--npm-dir', 'npm'], stage)
  run(process.execPath, [napi, 'prepublish', '--config-path', hostConfig, '--npm-dir', 'npm', '--tag-style', 'npm', '--no-gh-release', '--skip-optional-publish'], stage)

  const manifestPath = path.join(stage, 'package.json')
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'))
  manifest.optionalDependencies = Object.fromEntries(targets.map((t) => [`${packageName}-${t.platformArchABI}`, packageJson.version]))
  // `prepare` builds the checkout from source; in a published manifest npm
  // would list it among the install scripts a user has to approve.
  delete manifest.scripts.prepare
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`)

  mkdirSync(dist, { recursive: true })
  for (const old of readdirSync(dist).filter((name) => name.endsWith('.tgz'))) rmSync(path.join(dist, old))
  for (const dir of [stage, path.join(stage, 'npm', target.platformArchABI)]) {
    const [{ filename, size, entryCount }] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dist], dir, { capture: true }))
    console.log(`dist/${filename}  ${size} bytes, ${entryCount} files`)
  }
} finally {
  rmSync(work, { recursive: true, force: true })
}

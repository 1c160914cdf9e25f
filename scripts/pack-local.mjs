// `npm run pack:local`: builds the release addon for this machine and writes
// to dist/ what a release publishes for it: the main package's tarball and
// this host's platform package's, at the same version.
//
//   --prebuilt  pack the one binary already beside package.json (a release
//               build made elsewhere, as in the release workflow's test jobs)
//               instead of building; needs no Rust toolchain
//   --if-stale  do nothing when dist/ already holds the tarballs of exactly
//               the files and binary in the checkout now (a binary is as
//               current as the last build made it: `npm test` builds first)
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
import { createHash } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

import { readNapiConfig } from '@napi-rs/cli'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const dist = path.join(root, 'dist')
const fingerprintFile = path.join(dist, 'fingerprint')
const napi = path.join(root, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js')
const prebuilt = process.argv.includes('--prebuilt')
const ifStale = process.argv.includes('--if-stale')

/** Runs a command to completion; its output goes to this process's stderr unless captured. */
function run(command, args, cwd, { capture = false } = {}) {
  // npm is a .cmd script on Windows, which only a shell starts.
  const shell = process.platform === 'win32' && command === 'npm'
  return execFileSync(command, args, { cwd, shell, encoding: 'utf8', stdio: ['ignore', capture ? 'pipe' : process.stderr, 'inherit'] })
}

const { targets, packageName, binaryName, packageJson } = await readNapiConfig(path.join(root, 'package.json'))
const artifactOf = (target) => `${binaryName}.${target.platformArchABI}.node`

/** The target of the binary to pack: this host's, or the only one present with --prebuilt. */
function packedTarget() {
  if (prebuilt) {
    const present = targets.filter((t) => existsSync(path.join(root, artifactOf(t))))
    if (present.length !== 1) throw new Error(`--prebuilt needs exactly one binary of napi.targets beside package.json, found ${present.length}`)
    return present[0]
  }
  const host = /^host: (\S+)$/m.exec(run('rustc', ['-vV'], root, { capture: true }))?.[1]
  const target = targets.find((t) => t.triple === host)
  if (target === undefined) throw new Error(`this machine (${host}) is not in napi.targets (${targets.map((t) => t.triple).join(', ')}): nothing to pack for it`)
  return target
}

/** npm's own list of what it would pack from the checkout. */
function packedFiles() {
  const [{ files }] = JSON.parse(run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], root, { capture: true }))
  return files.map((file) => file.path).sort()
}

/** A hash of everything the two tarballs are made of. */
function fingerprint(target, files) {
  const hash = createHash('sha256')
  const npmDir = path.join('npm', target.platformArchABI)
  const inputs = [...files, ...readdirSync(path.join(root, npmDir)).map((file) => path.join(npmDir, file)), artifactOf(target)]
  for (const file of inputs) hash.update(`${file}\0`).update(readFileSync(path.join(root, file))).update('\0')
  return hash.digest('hex')
}

/** Whether dist/ holds the tarballs of the checkout as it is, for the target it was last packed for. */
function current() {
  if (!existsSync(fingerprintFile)) return false
  const [platformArchABI, recorded] = readFileSync(fingerprintFile, 'utf8').split('\n')
  const target = targets.find((t) => t.platformArchABI === platformArchABI)
  if (target === undefined || !existsSync(path.join(root, artifactOf(target)))) return false
  const tarballs = readdirSync(dist).filter((name) => name.endsWith('.tgz')).sort()
  const expected = [`${packageName}-${packageJson.version}.tgz`, `${packageName}-${platformArchABI}-${packageJson.version}.tgz`].sort()
  return JSON.stringify(tarballs) === JSON.stringify(expected) && recorded === fingerprint(target, packedFiles())
}

if (ifStale && current()) {
  console.log('dist/ holds the tarballs of the checkout as it is')
  process.exit(0)
}
const target = packedTarget()
if (!prebuilt) run('npm', ['run', 'build'], root)

const files = packedFiles()
const work = mkdtempSync(path.join(os.tmpdir(), 'rql-pack-'))
try {
  const stage = path.join(work, 'package')
  const artifacts = path.join(work, 'artifacts')
  const hostConfig = path.join(work, 'napi.host.json')
  const binary = artifactOf(target)

  for (const file of files) cpSync(path.join(root, file), path.join(stage, file))
  cpSync(path.join(root, 'npm', target.platformArchABI), path.join(stage, 'npm', target.platformArchABI), { recursive: true })
  mkdirSync(artifacts)
  cpSync(path.join(root, binary), path.join(artifacts, binary))
  writeFileSync(hostConfig, JSON.stringify({ ...packageJson.napi, targets: [target.triple] }))

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
  rmSync(fingerprintFile, { force: true })
  for (const old of readdirSync(dist).filter((name) => name.endsWith('.tgz'))) rmSync(path.join(dist, old))
  for (const dir of [stage, path.join(stage, 'npm', target.platformArchABI)]) {
    const [{ filename, size, entryCount }] = JSON.parse(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dist], dir, { capture: true }))
    console.log(`dist/${filename}  ${size} bytes, ${entryCount} files`)
  }
  writeFileSync(fingerprintFile, `${target.platformArchABI}\n${fingerprint(target, files)}`)
} finally {
  rmSync(work, { recursive: true, force: true })
}

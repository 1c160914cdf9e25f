'use strict'

// Loads the native addon through the generated binding.js. The binary comes
// from the platform package npm picked among the optionalDependencies (or, in
// a source checkout, from the file `npm run build` left beside this one).
// When none loads, napi-rs's own error names an npm bug and little else, so
// it is replaced here by one that says which package this machine needs,
// which ones exist, and how to build from source; the original is its cause.

const pkg = require('./package.json')

function hostPlatform() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const glibc = process.report.getReport().header.glibcVersionRuntime
    return `${platform}-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  if (platform === 'win32') return `${platform}-${arch}-msvc`
  return `${platform}-${arch}`
}

function missingBinaryError(cause) {
  const wanted = `${pkg.name}-${hostPlatform()}`
  const prebuilt = Object.keys(pkg.optionalDependencies ?? {})
  const source = pkg.repository.url.replace(/^git\+/, '')
  const lines = [`${pkg.name} ${pkg.version}: no native binary loaded for this machine; it looked for the package ${wanted}.`]
  if (prebuilt.length === 0) {
    lines.push('This copy lists no prebuilt packages (a source checkout): build the addon with `npm run build` (needs a Rust toolchain).')
    return new Error(lines.join('\n'), { cause })
  }
  lines.push(`Prebuilt packages of this version: ${prebuilt.join(', ')}.`)
  if (prebuilt.includes(wanted)) {
    lines.push(
      `${wanted} is one of them, so npm skipped it or it did not load (the cause below says which): reinstall without --omit=optional; if the lockfile was written on another platform and lacks it, remove node_modules and package-lock.json and install again (https://github.com/npm/cli/issues/4828).`,
    )
  }
  lines.push(
    `To build from source (Node.js 20+ and a Rust toolchain from https://rustup.rs): git clone ${source}, run \`npm ci\` in the clone (it builds the addon for this machine), then \`npm install <path of the clone>\` in your project, or set NAPI_RS_NATIVE_LIBRARY_PATH to the built .node file.`,
  )
  return new Error(lines.join('\n'), { cause })
}

try {
  module.exports = require('./binding.js')
} catch (cause) {
  throw missingBinaryError(cause)
}

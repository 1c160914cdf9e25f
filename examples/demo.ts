// The lock competition in one command: builds the addon if needed, starts
// the local cluster when none answers, runs three keepers that compete for
// one lock, kills the winner, shows a loser taking over, prints a summary,
// and stops everything it started.
//
// Usage: npm run demo   (REDIS_NODES moves the cluster off 6379-6381)

import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import path from 'node:path'

import { answers, clusterPorts } from '../infra/redis-cluster'

const ROOT = path.resolve(__dirname, '..')
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx')
// Keepers run as `node --import tsx` so that a signal reaches the keeper
// itself, not a launcher in front of it.
const NODE_TS = [process.execPath, '--import', 'tsx']
const TTL_MS = 4_000
const KEEPERS = [
  { instance: 'us-east-1', region: 'us-east' },
  { instance: 'eu-west-1', region: 'eu-west' },
  { instance: 'ap-south-1', region: 'ap-south' },
]
const LOCK = `demo-keeper-${process.pid}`

function banner(text: string): void {
  console.log(`\n── ${text} ${'─'.repeat(Math.max(0, 66 - text.length))}`)
}

function run(command: string, args: string[]): number {
  return spawnSync(command, args, { cwd: ROOT, stdio: 'inherit' }).status ?? 1
}

class Keeper {
  readonly lines: { at: number; text: string }[] = []
  private readonly child: ChildProcess
  private readonly listeners: ((line: string) => void)[] = []

  constructor(readonly instance: string, region: string) {
    this.child = spawn(NODE_TS[0], [
      ...NODE_TS.slice(1),
      path.join(ROOT, 'examples', 'keeper_with_lock.ts'),
      '--instance', instance, '--region', region, '--lock', LOCK,
      '--ttl-ms', String(TTL_MS), '--work-ms', '1000', '--retry-ms', '500',
    ], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
    let partial = ''
    this.child.stdout?.on('data', (chunk: Buffer) => {
      const text = partial + chunk.toString()
      const lines = text.split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        if (line.startsWith('===') || line.startsWith('KEEPER')) continue
        this.lines.push({ at: Date.now(), text: line })
        console.log(`  ${line}`)
        for (const listener of this.listeners) listener(line)
      }
    })
  }

  /** Resolves with the time the keeper first prints a line matching `pattern`. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.instance} did not print ${pattern} within ${timeoutMs} ms`)), timeoutMs)
      this.listeners.push((line) => {
        if (pattern.test(line)) {
          clearTimeout(timer)
          resolve(Date.now())
        }
      })
    })
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  kill(signal: NodeJS.Signals): Promise<void> {
    if (!this.alive) return Promise.resolve()
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve())
      this.child.kill(signal)
    })
  }
}

async function main(): Promise<number> {
  banner('1. the native addon')
  const built = readdirSync(ROOT).some((file) => file.endsWith('.node'))
  if (!built || !existsSync(path.join(ROOT, 'binding.js'))) {
    console.log('Not built yet: building (about two minutes the first time)')
    if (run('npm', ['run', 'build']) !== 0) return 1
  } else {
    console.log('Built.')
  }

  banner('2. a three-node Redis cluster')
  const ports = clusterPorts()
  const up = await Promise.all(ports.map((port) => answers(port)))
  let startedCluster = false
  if (up.every(Boolean)) {
    console.log(`Nodes answer on ${ports.join(', ')}: using them.`)
  } else {
    if (run(TSX, [path.join(ROOT, 'infra', 'redis-cluster.ts'), 'start']) !== 0) return 1
    startedCluster = true
  }

  const keepers: Keeper[] = []
  try {
    banner(`3. three keepers compete for '${LOCK}' (TTL ${TTL_MS} ms)`)
    const acquired = KEEPERS.map(() => 0)
    for (const { instance, region } of KEEPERS) keepers.push(new Keeper(instance, region))
    const firstWin = await Promise.any(keepers.map((k, i) => k.waitFor(/✓ lock acquired/, 30_000).then(() => i)))
    acquired[firstWin]++
    const winner = keepers[firstWin]
    await Promise.all(keepers.filter((k) => k !== winner).map((k) => k.waitFor(/✗ lock unavailable/, 10_000)))
    await winner.waitFor(/Working/, 10_000)

    banner(`4. the winner ${winner.instance} crashes (SIGKILL): its lease runs out after the TTL`)
    const crashedAt = Date.now()
    await winner.kill('SIGKILL')
    const losers = keepers.filter((k) => k !== winner)
    const takeover = await Promise.any(losers.map((k) => k.waitFor(/✓ lock acquired/, TTL_MS + 15_000).then((at) => ({ keeper: k, at }))))
    await takeover.keeper.waitFor(/Working/, 10_000)

    banner('5. the keepers left stop (SIGTERM) and release')
    await Promise.all(losers.map((k) => k.kill('SIGTERM')))

    const count = (k: Keeper, text: string) => k.lines.filter((line) => line.text.includes(text)).length
    const holders = keepers.map((k) => count(k, '✓ lock acquired'))
    const refusals = keepers.map((k) => count(k, '✗ lock unavailable'))
    const tooEarly = losers.filter((k) => k.lines.some((line) => line.text.includes('✓ lock acquired') && line.at < crashedAt))
    banner('summary')
    console.log(`  first winner:  ${winner.instance}`)
    console.log(`  taken over by: ${takeover.keeper.instance}, ${takeover.at - crashedAt} ms after the crash (TTL ${TTL_MS} ms)`)
    for (const [i, keeper] of keepers.entries()) {
      console.log(`  ${keeper.instance.padEnd(11)} acquired ${holders[i]}x, refused ${refusals[i]}x`)
      // The five numbers of the quick reference, which a keeper prints when it stops (not when killed).
      const numbers = keeper.lines.find((line) => line.text.includes('Numbers |'))?.text
      console.log(`    ${numbers ? numbers.slice(numbers.indexOf('Numbers |')) : 'Numbers | none: killed before it could print them'}`)
    }
    if (tooEarly.length > 0) {
      console.log(`  exclusive: NO, ${tooEarly.map((k) => k.instance).join(', ')} acquired while ${winner.instance} held the lock`)
      return 1
    }
    console.log(`  exclusive: yes, no keeper acquired the lock while ${winner.instance} held it`)
    return 0
  } finally {
    await Promise.all(keepers.map((k) => k.kill('SIGTERM')))
    if (startedCluster) {
      banner('6. stopping the cluster this demo started')
      run(TSX, [path.join(ROOT, 'infra', 'redis-cluster.ts'), 'stop'])
    }
  }
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (error: Error) => {
    console.error(`demo failed: ${error.message}`)
    process.exitCode = 1
  },
)

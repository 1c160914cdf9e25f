// One of the hand-over workload's worker processes: competes for one key,
// holds it for a moment, releases it, and competes again only after another
// worker got it. Reports each acquisition and release, on the machine-wide
// monotonic clock, to the parent.

import { FACTORIES, type Name } from './contenders'

interface Config {
  name: Name
  addresses: string[]
  key: string
  holdMs: number
  id: number
}

const config = JSON.parse(process.argv[2]) as Config
// Peers poll every 50 ms; this library waits for the release notification.
const contender = FACTORIES[config.name](config.addresses, { retries: -1, delayMs: 50, waitMs: 60_000 })
let stopped = false
let otherAcquired: (() => void) | null = null
let releasedAt = 0n

process.on('message', (message: { type: string; id?: number; at?: string }) => {
  if (message.type === 'stop') {
    stopped = true
    otherAcquired?.()
  } else if (message.type === 'acquired' && message.id !== config.id && BigInt(message.at ?? '0') > releasedAt) {
    otherAcquired?.()
  }
})

const now = () => process.hrtime.bigint().toString()
const send = (message: object) => new Promise<void>((resolve) => process.send?.(message, () => resolve()))

async function main(): Promise<void> {
  await send({ type: 'ready', id: config.id })
  while (!stopped) {
    // A library that gives up despite unlimited retries just competes again.
    const release = await contender.acquire(config.key, 10_000)
    if (stopped) break
    if (!release) continue
    const turn = new Promise<void>((resolve) => {
      otherAcquired = resolve
    })
    await send({ type: 'acquired', id: config.id, at: now() })
    await new Promise((resolve) => setTimeout(resolve, config.holdMs))
    await release()
    releasedAt = process.hrtime.bigint()
    await send({ type: 'released', id: config.id, at: releasedAt.toString() })
    await turn
    otherAcquired = null
  }
  await contender.close()
  process.exit(0)
}

void main()

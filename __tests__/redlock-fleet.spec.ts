import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { describe, test } from 'node:test'

import { overlaps, type Interval } from './faults/checker'
import { useCluster } from './helpers/fixture'
import type { FleetConfig, FleetLine } from './redlock/fleet-worker'

const RUN_MS = 4_000
/** How long a worker may take to load before the run's time counts. */
const STARTUP_MS = 1_500
const TTL_MS = 1_000

/** One worker process; its lines once it exits. */
async function worker(config: FleetConfig): Promise<FleetLine[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'redlock', 'fleet-worker.ts'), JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
  const [code] = await once(child, 'exit')
  assert.equal(code, 0, `worker ${config.id} exited with ${code}:\n${output}`)
  return output.trim().split('\n').map((line) => JSON.parse(line) as FleetLine)
}

/**
 * A mixed fleet during a migration: processes on npm redlock@5.0.0-beta.2
 * and processes on redis-quorum-lock/redlock take the same resources on the
 * same nodes, each recording when it believed it held one (from the moment
 * acquire resolved to the earlier of its release and the lock's
 * expiration). The fault suite's checker finds any two owners believing at
 * once. The same processes also contend, as a control, through clients
 * whose keyPrefix differs between the two libraries: different keys, so
 * nothing keeps them apart, and the checker must find overlaps there.
 */
describe('redlock: a mixed fleet of npm redlock and redis-quorum-lock/redlock processes', () => {
  const t = useCluster(3)

  test('contending for the same resources, no two owners ever believe they hold one at once', async () => {
    const ports = t.cluster.nodes.map((node) => node.port)
    const until = Date.now() + STARTUP_MS + RUN_MS
    const configs: FleetConfig[] = (['npm', 'npm', 'ours', 'ours'] as const).map((kind, i) => ({
      id: `${kind}${i}`,
      kind,
      ports,
      ttlMs: TTL_MS,
      until,
      groups: [
        { name: 'fleet', resources: ['shared-0', 'shared-1'], keyPrefix: '' },
        { name: 'control', resources: ['apart-0', 'apart-1'], keyPrefix: kind === 'ours' ? 'elsewhere:' : '' },
      ],
    }))
    const lines = (await Promise.all(configs.map(worker))).flatMap((output, i) =>
      output.map((line) => ({ ...line, process: configs[i].kind })),
    )
    const errors = lines.filter((line) => line.kind === 'error')
    assert.deepEqual(errors, [], 'no error but the ExecutionError of a resource held elsewhere')
    const intervals = (group: string, kind?: string): Interval[] =>
      lines.flatMap((line) =>
        line.kind === 'interval' && line.group === group && (kind === undefined || line.process === kind)
          ? [{ owner: line.owner, resource: line.resource, called: BigInt(line.called), start: BigInt(line.start), end: BigInt(line.end) }]
          : [],
      )
    const expired = (kind: string) => lines.filter((line) => line.kind === 'expired' && line.process === kind).length

    for (const kind of ['npm', 'ours']) {
      for (const resource of ['shared-0', 'shared-1']) {
        const held = intervals('fleet', kind).filter((interval) => interval.resource === resource).length
        assert.ok(held >= 5, `${kind} held ${resource} ${held} times: both libraries must contend for each resource`)
      }
    }
    const found = overlaps(intervals('fleet'))
    assert.deepEqual(found.map(({ resource, first, second, ms }) => ({ resource, first: first.owner, second: second.owner, ms })), [])
    assert.equal(expired('ours'), 0, 'this library never hands over an expired lock')

    const control = overlaps(intervals('control'))
    assert.ok(control.length > 0, 'with different keys the two libraries overlap, so the check can fail')
    console.log(
      `fleet: ${intervals('fleet', 'npm').length} npm redlock and ${intervals('fleet', 'ours').length} redis-quorum-lock/redlock holds, 0 overlaps;` +
        ` npm redlock handed over ${expired('npm')} expired locks; control: ${control.length} overlaps`,
    )
  })
})

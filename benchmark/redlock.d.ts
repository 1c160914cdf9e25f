// npm redlock@5.0.0-beta.2 ships its types without a "types" export condition,
// so TypeScript's node16+ resolution cannot find them: the part the benchmark
// uses, declared here.
declare module 'redlock' {
  import type { Cluster, Redis } from 'ioredis'

  export interface Settings {
    driftFactor: number
    retryCount: number
    retryDelay: number
    retryJitter: number
    automaticExtensionThreshold: number
  }

  export class Lock {
    readonly resources: string[]
    readonly value: string
    readonly expiration: number
    release(): Promise<unknown>
    extend(duration: number): Promise<Lock>
  }

  export default class Redlock {
    constructor(clients: Iterable<Redis | Cluster>, settings?: Partial<Settings>)
    acquire(resources: string[], duration: number, settings?: Partial<Settings>): Promise<Lock>
    quit(): Promise<void>
  }
}

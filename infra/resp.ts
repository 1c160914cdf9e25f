// A small Redis client for the cluster tools: one connection, one command at
// a time, plain or TLS, with AUTH. The tools need no more, and it keeps them
// free of client libraries.

import { readFileSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'

import type { ResolvedNode } from '..'

export type Reply = string | number | null | Reply[] | Error

export class RespConnection {
  private buffer = Buffer.alloc(0)
  private waiting: ((reply: Reply) => void) | null = null
  private failure: Error | null = null

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk])
      this.deliver()
    })
    socket.on('error', (error) => this.fail(error))
    socket.on('close', () => this.fail(new Error('connection closed')))
  }

  /** Connects (and authenticates) within `timeoutMs`. */
  static async open(node: ResolvedNode, timeoutMs: number): Promise<RespConnection> {
    const socket = node.tls
      ? tls.connect({ host: node.host, port: node.port, servername: net.isIP(node.host) ? undefined : node.host, ca: extraCa() })
      : net.connect({ host: node.host, port: node.port })
    socket.setNoDelay(true)
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once(node.tls ? 'secureConnect' : 'connect', () => resolve())
        socket.once('error', reject)
      }),
      timeoutMs,
      'connect',
    ).catch((error: Error) => {
      socket.destroy()
      throw error
    })
    const connection = new RespConnection(socket)
    const { username, password } = await credentialsOf(node, timeoutMs).catch((error: Error) => {
      connection.close()
      throw error
    })
    if (password) {
      const auth = username ? ['AUTH', username, password] : ['AUTH', password]
      const reply = await connection.command(auth, timeoutMs)
      if (reply instanceof Error) {
        connection.close()
        throw new Error(`authentication failed: ${reply.message.split(' ')[0]}`)
      }
    }
    return connection
  }

  /** Sends one command; a server error comes back as an `Error` value. */
  command(args: (string | number)[], timeoutMs: number): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure)
    const parts = args.map(String)
    let payload = `*${parts.length}\r\n`
    for (const part of parts) payload += `$${Buffer.byteLength(part)}\r\n${part}\r\n`
    const reply = new Promise<Reply>((resolve) => {
      this.waiting = resolve
    })
    this.socket.write(payload)
    return withTimeout(reply, timeoutMs, String(args[0]))
  }

  close(): void {
    this.socket.destroy()
  }

  private fail(error: Error): void {
    this.failure ??= error
    const waiting = this.waiting
    this.waiting = null
    waiting?.(error)
  }

  private deliver(): void {
    if (!this.waiting) return
    const parsed = parse(this.buffer, 0)
    if (!parsed) return
    this.buffer = this.buffer.subarray(parsed.end)
    const waiting = this.waiting
    this.waiting = null
    waiting(parsed.value)
  }
}

/** Parses one reply from `buffer` at `at`, or null when it is not all there yet. */
function parse(buffer: Buffer, at: number): { value: Reply; end: number } | null {
  const lineEnd = buffer.indexOf('\r\n', at)
  if (lineEnd < 0) return null
  const line = buffer.toString('utf8', at + 1, lineEnd)
  const next = lineEnd + 2
  switch (String.fromCharCode(buffer[at])) {
    case '+':
      return { value: line, end: next }
    case '-':
      return { value: new Error(line), end: next }
    case ':':
      return { value: Number(line), end: next }
    case '$': {
      const length = Number(line)
      if (length < 0) return { value: null, end: next }
      if (buffer.length < next + length + 2) return null
      return { value: buffer.toString('utf8', next, next + length), end: next + length + 2 }
    }
    case '*': {
      const count = Number(line)
      if (count < 0) return { value: null, end: next }
      const items: Reply[] = []
      let end = next
      for (let i = 0; i < count; i++) {
        const item = parse(buffer, end)
        if (!item) return null
        items.push(item.value)
        end = item.end
      }
      return { value: items, end }
    }
    default:
      return { value: new Error(`unexpected reply: ${line}`), end: next }
  }
}

/** The user and password of `node`: its provider's, when it has one, else its own. */
async function credentialsOf(node: ResolvedNode, timeoutMs: number): Promise<{ username?: string; password?: string }> {
  if (!node.credentials) return node
  let given: unknown
  try {
    given = await withTimeout(node.credentials(), timeoutMs, 'the credentials provider')
  } catch (error) {
    throw new Error(`credentials provider failed: ${error instanceof Error ? error.message : `it threw ${typeof error}`}`)
  }
  const { username, password } = (given ?? {}) as { username?: unknown; password?: unknown }
  if (typeof password !== 'string' || password === '') {
    throw new Error('credentials provider failed: it returned no password, not { username?, password, expiresAt? }')
  }
  return { username: typeof username === 'string' && username !== '' ? username : node.username, password }
}

/** The CA of `SSL_CERT_FILE`, which the lock's TLS trusts too, added to Node's roots. */
function extraCa(): string[] | undefined {
  const file = process.env.SSL_CERT_FILE
  if (!file) return undefined
  return [...tls.rootCertificates, readFileSync(file, 'utf8')]
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${timeoutMs} ms`)), timeoutMs)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

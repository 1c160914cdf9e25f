// A throwaway certificate authority for the specs that start TLS nodes.

import { execFileSync } from 'node:child_process'
import path from 'node:path'

/** A CA and a server certificate for localhost and 127.0.0.1 in `dir`, made with openssl. */
export function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  const file = (name: string) => path.join(dir, name)
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' })
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=test-ca',
    '-keyout', file('ca.key'), '-out', file('ca.crt'))
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost',
    '-keyout', file('server.key'), '-out', file('server.csr'))
  execFileSync('sh', ['-c', `printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ${file('san.ext')}`])
  openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.crt'), '-CAkey', file('ca.key'),
    '-CAcreateserial', '-days', '2', '-extfile', file('san.ext'), '-out', file('server.crt'))
  return { ca: file('ca.crt'), cert: file('server.crt'), key: file('server.key') }
}

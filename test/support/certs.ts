// A throw-away self-signed certificate for STARTTLS tests, made with openssl.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { tempDir } from './temp.js';

export async function selfSignedCert(t: Pick<TestContext, 'after'>): Promise<{ cert: string; key: string }> {
  const dir = await tempDir(t, 'sluice-cert-');
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-days', '2', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert, key };
}

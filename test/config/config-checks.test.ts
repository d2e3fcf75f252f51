// `sluice config check` catches what would fail at start or surprise later,
// over the real CLI: certificate and key files, the data directory, a
// management address that is a listener's, zero or negative durations, ports
// out of range, and a mistyped key gets a suggestion (SPEC §8).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { selfSignedCert } from '../support/certs.js';
import { CLI } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

const execute = promisify(execFile);

async function check(t: Parameters<typeof tempDir>[0], yaml: string): Promise<{ code: number; output: string }> {
  const dir = await tempDir(t);
  const path = join(dir, 'sluice.yaml');
  await writeFile(path, yaml.replaceAll('$DIR', dir));
  return execute(process.execPath, [CLI, 'config', 'check', '--config', path]).then(
    ({ stdout }) => ({ code: 0, output: stdout }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, output: error.stdout + error.stderr }),
  );
}

const listener = (extra = '') => `listeners:\n  - name: inbound\n    listen: 127.0.0.1:2525\n${extra}`;

describe('sluice config check', () => {
  it('names a missing, unreadable, non-PEM or mismatched certificate and key, with key path and line', async (t) => {
    const good = await selfSignedCert(t);
    const other = await selfSignedCert(t);
    const tls = (cert: string, key: string) => listener(`    tls:\n      cert: ${cert}\n      key: ${key}\n`) + 'dataDir: $DIR/data\n';
    const missing = await check(t, tls('/nonexistent/cert.pem', good.key));
    assert.equal(missing.code, 2);
    assert.match(missing.output, /listeners\[0\]\.tls\.cert \(line 5\): certificate file \/nonexistent\/cert\.pem does not exist/);
    const notPem = await check(t, tls(good.cert, '$DIR/sluice.yaml'));
    assert.match(notPem.output, /listeners\[0\]\.tls\.key \(line 6\): .*sluice\.yaml is not a PEM private key/);
    const mismatched = await check(t, tls(good.cert, other.key));
    assert.match(mismatched.output, new RegExp(`listeners\\[0\\]\\.tls\\.key \\(line 6\\): ${other.key} does not go with ${good.cert}`));
    assert.equal((await check(t, tls(good.cert, good.key))).code, 0);
    assert.ok((await readFile(good.key)).length > 0);
  });

  it('refuses a data directory that cannot be created', async (t) => {
    const result = await check(t, `${listener()}dataDir: $DIR/sluice.yaml/data\n`);
    assert.equal(result.code, 2);
    assert.match(result.output, /dataDir \(line 4\): .*sluice\.yaml is not a directory/);
  });

  it('refuses a management address that is also a listener address', async (t) => {
    const result = await check(t, `${listener()}management:\n  listen: 127.0.0.1:2525\n`);
    assert.match(result.output, /management\.listen \(line 5\): 127\.0\.0\.1:2525 is also the address of listeners\[0\]/);
  });

  it('refuses zero and negative durations and ports out of range, saying so', async (t) => {
    const result = await check(
      t,
      [
        'listeners:',
        '  - name: inbound',
        '    listen: 127.0.0.1:70000',
        '    idleTimeout: 0s',
        '    sessionTimeout: -5m',
        'routes:',
        '  - name: backend',
        '    match: [example.com]',
        '    smartHosts: ["10.0.0.1:99999"]',
      ].join('\n'),
    );
    assert.equal(result.code, 2);
    assert.match(result.output, /listeners\[0\]\.listen \(line 3\): port 70000 of "127\.0\.0\.1:70000" is out of range: a port is 1 to 65535/);
    assert.match(result.output, /listeners\[0\]\.idleTimeout \(line 4\): duration "0s" is zero; it must be longer than 0/);
    assert.match(result.output, /listeners\[0\]\.sessionTimeout \(line 5\): duration "-5m" is negative/);
    assert.match(result.output, /routes\[0\]\.smartHosts\[0\] \(line 9\): port out of range: a port is 1 to 65535/);
  });

  it('suggests the key that was meant', async (t) => {
    const result = await check(t, `${listener()}routes:\n  - name: backend\n    match: [example.com]\n    smarthosts: ["10.0.0.1"]\n`);
    assert.match(result.output, /routes\[0\]\.smarthosts \(line 7\): unknown key; did you mean "smartHosts"\?/);
  });
});

// sluice.yaml validation (SPEC §8): errors name the key path and line, unknown
// keys are errors, sizes and durations parse in one place; `sluice config check`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ConfigError, parseConfigText } from '../../src/config/load.js';
import { renderConfigReference } from '../../src/config/reference.js';
import { parseDuration, parseListenAddress, parseSize } from '../../src/config/units.js';
import { CLI } from '../support/sluice.js';
import { tempDir } from '../support/temp.js';

const run = promisify(execFile);

function problemsOf(text: string): string[] {
  try {
    parseConfigText(text, 'sluice.yaml');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.message.split('\n').slice(1).map((l) => l.trim());
  }
  assert.fail('expected the config to be refused');
}

describe('config units', () => {
  it('parses sizes (binary units) and durations', () => {
    assert.deepEqual(parseSize('35MB'), { ok: true, value: 35 * 1024 * 1024 });
    assert.deepEqual(parseSize('512kb'), { ok: true, value: 512 * 1024 });
    assert.deepEqual(parseSize(1000), { ok: true, value: 1000 });
    assert.deepEqual(parseSize('10GB'), { ok: true, value: 10 * 1024 ** 3 });
    assert.equal(parseSize('12 parsecs').ok, false);
    assert.equal(parseSize(-1).ok, false);
    assert.deepEqual(parseDuration('72h'), { ok: true, value: 72 * 3_600_000 });
    assert.deepEqual(parseDuration('5m'), { ok: true, value: 300_000 });
    assert.deepEqual(parseDuration('1s'), { ok: true, value: 1000 });
    assert.deepEqual(parseDuration('250ms'), { ok: true, value: 250 });
    assert.deepEqual(parseDuration(90), { ok: true, value: 90_000 });
    assert.equal(parseDuration('5 minutes').ok, false);
    assert.equal(parseDuration('1y').ok, false);
    assert.deepEqual(parseListenAddress('[::1]:2525'), { ok: true, host: '::1', port: 2525 });
    assert.deepEqual(parseListenAddress('0.0.0.0:25'), { ok: true, host: '0.0.0.0', port: 25 });
    assert.equal(parseListenAddress('localhost').ok, false);
    assert.equal(parseListenAddress('1.2.3.4:70000').ok, false);
  });
});

describe('config validation', () => {
  it('gives the embedded default for an empty file: SMTP on 127.0.0.1:2525, SQLite in ./sluice-data, relay from loopback', () => {
    const config = parseConfigText('', 'embedded default');
    assert.equal(config.listeners.length, 1);
    assert.deepEqual(config.listeners[0]!.listen, { text: '127.0.0.1:2525', host: '127.0.0.1', port: 2525 });
    assert.equal(config.listeners[0]!.maxMessageSize, 35 * 1024 * 1024);
    assert.equal(config.dataDir, './sluice-data');
    assert.equal(config.storage.backend, 'sqlite');
    assert.deepEqual(config.relay.allowFrom, ['127.0.0.0/8', '::1/128']);
  });

  it('names the key path and line of a bad value', () => {
    const text = ['node: relay1', 'listeners:', '  - name: inbound', '    listen: nowhere', '    maxMessageSize: 35MB'].join('\n');
    assert.deepEqual(problemsOf(text), ['listeners[0].listen (line 4): invalid address "nowhere" (expected host:port, e.g. 0.0.0.0:25 or [::1]:2525)']);
  });

  it('refuses unknown keys, at any depth, with their line', () => {
    const text = ['node: relay1', 'listners: []', 'relay:', '  allowFrom: [127.0.0.0/8]', '  openRelay: true'].join('\n');
    assert.deepEqual(problemsOf(text), ['listners (line 2): unknown key; did you mean "listeners"?', 'relay.openRelay (line 5): unknown key']);
  });

  it('reports bad durations and sizes with the key that holds them', () => {
    const text = ['listeners:', '  - name: a', '    listen: 127.0.0.1:25', '    idleTimeout: 5 minutes', '    maxMessageSize: huge'].join('\n');
    const problems = problemsOf(text);
    assert.ok(problems.includes('listeners[0].idleTimeout (line 4): invalid duration "5 minutes" (expected e.g. 500ms, 30s, 5m, 72h, 2d)'), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('listeners[0].maxMessageSize (line 5): invalid size "huge"')), problems.join('\n'));
  });

  it('reports a YAML syntax error once, with its line and column', () => {
    const problems = problemsOf('node: a\nlisteners:\n  - name: [unclosed\n');
    assert.equal(problems.length, 1, problems.join('\n'));
    assert.match(problems[0]!, /^\(top level\) \(line \d\): YAML syntax error at line \d, column \d+: /);
  });

  it('refuses duplicate listener names, bad networks and bad domains', () => {
    const text = [
      'listeners:',
      '  - { name: a, listen: "127.0.0.1:25" }',
      '  - { name: a, listen: "127.0.0.1:26" }',
      'relay: { allowFrom: [10.0.0.0/33] }',
      'acceptedDomains: ["bad domain"]',
    ].join('\n');
    const problems = problemsOf(text);
    assert.ok(problems.some((p) => p.startsWith('listeners[1].name (line 3): duplicates listeners[0]')), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('relay.allowFrom[0] (line 4): expected an IP address or CIDR')), problems.join('\n'));
    assert.ok(problems.some((p) => p.startsWith('acceptedDomains[0] (line 5): expected a domain')), problems.join('\n'));
  });
});

describe('sluice config check', () => {
  it('prints OK and exits 0 for a good file, prints every problem and exits 2 for a bad one', async (t) => {
    const dir = await tempDir(t);
    const good = join(dir, 'good.yaml');
    const bad = join(dir, 'bad.yaml');
    await writeFile(good, 'node: relay1\nlisteners:\n  - name: inbound\n    listen: 127.0.0.1:2525\n');
    await writeFile(bad, 'node: relay1\nlisteners:\n  - name: inbound\n    listen: 127.0.0.1:2525\n    idleTimeout: soon\n');
    const ok = await run(process.execPath, [CLI, 'config', 'check', '--config', good]);
    assert.equal(ok.stdout.trim(), `OK: ${good}`);
    const failed = await run(process.execPath, [CLI, 'config', 'check', '--config', bad]).then(
      () => assert.fail('expected a non-zero exit'),
      (error: { code: number; stderr: string }) => error,
    );
    assert.equal(failed.code, 2);
    assert.match(failed.stderr, /listeners\[0\]\.idleTimeout \(line 5\): invalid duration "soon"/);
    const viaEnv = await run(process.execPath, [CLI, 'config', 'check'], { env: { ...process.env, SLUICE_CONFIG: good } });
    assert.equal(viaEnv.stdout.trim(), `OK: ${good}`);
    const missing = await run(process.execPath, [CLI, 'config', 'check', '--config', join(dir, 'nope.yaml')]).catch((e: { code: number; stderr: string }) => e);
    assert.equal((missing as { code: number }).code, 2);
    assert.match((missing as { stderr: string }).stderr, /cannot read file/);
  });
});

describe('configuration reference', () => {
  it('docs/configuration.md is the reference generated from the schema (run `sluice config reference > docs/configuration.md`)', async () => {
    const docs = await readFile(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');
    assert.equal(docs, renderConfigReference());
  });
});

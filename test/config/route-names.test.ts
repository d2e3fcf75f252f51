// Route names name queues (RT-1, QU-1): two routes with one name, a route named
// like one of Sluice's own queues, or like a domain an MX route delivers, would
// share a queue and send one route's mail to another's next hop. An empty
// config file is never read as the embedded default.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createRoutingTable } from '../../src/categorizer/routing-table.js';
import { ConfigError, loadConfig, parseConfigText } from '../../src/config/load.js';
import { tempDir } from '../support/temp.js';

function problemsOf(text: string): string[] {
  try {
    parseConfigText(text, 'sluice.yaml');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems.map((p) => `${p.path} (line ${p.line}): ${p.message}`);
  }
  assert.fail('expected the config to be refused');
}

const route = (name: string, match: string, target = 'smartHosts: ["10.0.0.1:25"]') => `  - name: ${name}\n    match: [${match}]\n    ${target}\n`;

describe('route names', () => {
  it('refuses two routes with one name, naming the key and the line', () => {
    const problems = problemsOf(`routes:\n${route('backend', 'corp.test')}${route('Backend', 'partner.test')}`);
    assert.deepEqual(problems, ['routes[1].name (line 5): "Backend" is already the name of routes[0]: route names must be unique']);
  });

  it("refuses a route named like one of Sluice's own queues", () => {
    for (const name of ['Submission', 'unreachable', 'POISON']) {
      assert.match(problemsOf(`routes:\n${route(name, 'corp.test')}`)[0]!, /is the name of a queue of Sluice's own/);
    }
  });

  it('refuses a smart-host route named like a domain an MX route delivers, and takes names without a dot', () => {
    const mx = route('internet', '"*"', 'mx: true');
    assert.match(problemsOf(`routes:\n${route('mail.partner.test', 'partner.test')}${mx}`)[0]!, /^routes\[0\]\.name \(line 2\): .*route "internet" delivers by MX/);
    assert.doesNotThrow(() => parseConfigText(`routes:\n${route('backend', 'corp.test')}${mx}`, 'sluice.yaml'));
    assert.doesNotThrow(() => parseConfigText(`routes:\n${route('relay.corp', 'corp.test')}${route('internet', 'example.org', 'mx: true')}`, 'sluice.yaml'));
  });

  it('never sends a domain without a dot to an MX queue, where it could meet a smart-host queue of that name', () => {
    const table = createRoutingTable(parseConfigText(`routes:\n${route('backend', 'corp.test')}${route('internet', '"*"', 'mx: true')}`, 'sluice.yaml').routes);
    assert.deepEqual(table.decide('someone@backend', 100), { kind: 'unreachable', reason: 'backend has no dot: route internet delivers by MX only to domains' });
    assert.deepEqual(table.decide('someone@example.org', 100), { kind: 'queue', queue: 'example.org', deliveryType: 'DnsConnectorDelivery', route: 'internet' });
  });
});

describe('config files that are not configurations', () => {
  it('refuses an empty file and a file that is not a mapping, instead of taking the embedded default', async (t) => {
    const dir = await tempDir(t);
    for (const [name, text] of [
      ['empty.yaml', ''],
      ['blank.yaml', '\n   \n'],
      ['scalar.yaml', 'just some words\n'],
      ['list.yaml', '- a\n- b\n'],
    ]) {
      const path = join(dir, name!);
      await writeFile(path, text!);
      await assert.rejects(loadConfig(path), (error: unknown) => error instanceof ConfigError && /empty|mapping/.test(error.problems[0]!.message), name);
    }
  });
});

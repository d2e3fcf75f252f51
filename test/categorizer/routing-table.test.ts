// Route matching (RT-1, RT-2): first matching route wins; exact, *.suffix, *;
// disabled or missing routes lead to Unreachable; size limits fail.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createRoutingTable } from '../../src/categorizer/routing-table.js';
import { parseConfigText } from '../../src/config/load.js';

const { routes } = parseConfigText(
  [
    'routes:',
    '  - { name: backend, match: [example.com], smartHosts: ["mail1.internal:25", "mail2.internal"], maxMessageSize: 1KB }',
    '  - { name: subs, match: ["*.example.org"], smartHosts: ["mail3.internal"] }',
    '  - { name: off, match: [off.example], smartHosts: ["x"], enabled: false }',
    '  - { name: internet, match: ["*"], mx: true }',
  ].join('\n'),
  'test',
);
const table = createRoutingTable(routes);

it('picks the first route that matches, by exact domain, suffix or wildcard', () => {
  assert.deepEqual(table.decide('a@Example.COM', 10), { kind: 'queue', queue: 'backend', deliveryType: 'SmartHostConnectorDelivery', route: 'backend' });
  assert.deepEqual(table.decide('a@mx.example.org', 10), { kind: 'queue', queue: 'subs', deliveryType: 'SmartHostConnectorDelivery', route: 'subs' });
  assert.deepEqual(table.decide('a@example.org', 10), { kind: 'queue', queue: 'example.org', deliveryType: 'DnsConnectorDelivery', route: 'internet' });
  assert.deepEqual(table.decide('a@gmail.test', 10), { kind: 'queue', queue: 'gmail.test', deliveryType: 'DnsConnectorDelivery', route: 'internet' });
});

it('sends disabled and missing routes to Unreachable, and fails messages over the route size', () => {
  assert.deepEqual(table.decide('a@off.example', 10), { kind: 'unreachable', reason: 'route off is disabled' });
  assert.deepEqual(createRoutingTable([]).decide('a@x.test', 10), { kind: 'unreachable', reason: 'no route matches x.test' });
  const tooBig = table.decide('a@example.com', 2048);
  assert.equal(tooBig.kind, 'fail');
  assert.match((tooBig as { reply: string }).reply, /^552 5\.3\.4 /);
});

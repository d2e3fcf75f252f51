// Filter trees (-or, -not, parentheses, -notlike) and Recipients against the
// real queue stores, SQLite and (with SLUICE_TEST_PG_URL) PostgreSQL (issue 14,
// MG-1): both give exactly the same messages, in Submission and in delivery
// queues, and a value never becomes SQL.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseFilter, resolveFilter } from '../../src/management/filter.js';
import { MESSAGE_PROPERTIES } from '../../src/management/messages.js';
import { openSqliteStore } from '../../src/store/sqlite/store.js';
import type { QueueStore } from '../../src/store/types.js';
import { freshStore, route, storeMessage, type OpenStore } from '../store/conformance.js';
import { NO_PG, openPg } from '../store/postgres-support.js';

const openSqlite: OpenStore = (dir, clock) => openSqliteStore({ dataDir: dir, clock, poisonThreshold: 2, owner: 'test/1', leaseTimeout: 60_000 });

/** m1 to b@ and c@ (split: b@ in "com", c@ in "org"), m2 to d@ in "com" with an error, m3 to e@ still in Submission. */
async function populate(store: QueueStore) {
  const rcpt = (...addresses: string[]) => addresses.map((address) => ({ address }));
  await storeMessage(store, Buffer.from('1\r\n'), { subject: 'm1', mailFrom: 'a@example.net', recipients: rcpt('b@example.com', 'c@example.org') });
  await storeMessage(store, Buffer.from('2\r\n'), { subject: 'm2', mailFrom: 'x@example.net', recipients: rcpt('d@example.com') });
  const claimed = await store.claimSubmission(2, 0);
  const [one, two] = claimed;
  const m1 = route(one!, 'com', [0]);
  await store.routeMessages([
    { ...m1, items: [...m1.items, ...route(one!, 'org', [1]).items] },
    route(two!, 'com', [0], { lastError: '451 4.4.1 timed out' }),
  ]);
  await storeMessage(store, Buffer.from('3\r\n'), { subject: 'm3', mailFrom: 'a@example.net', recipients: rcpt('e@example.com', 'f@example.org') });
}

function describeFilters(backend: string, open: OpenStore) {
  describe(`filter trees and Recipients on ${backend} (MG-1)`, () => {
    it('returns exactly the matching entries', async (t) => {
      const { store } = await freshStore(t, open);
      await populate(store);
      const entries = async (filter: string) =>
        (await store.listMessages(resolveFilter(parseFilter(filter), MESSAGE_PROPERTIES, 0), 100)).map((m) => `${m.subject}@${m.queue}`).sort();
      assert.deepEqual(await entries('Recipients -eq "B@Example.com"'), ['m1@com']);
      assert.deepEqual(await entries('Recipients -like "*@example.org"'), ['m1@org', 'm3@Submission'], 'an entry matches by the recipients it carries; Submission by all');
      assert.deepEqual(await entries('Recipients -eq e@example.com -or Recipients -eq d@example.com'), ['m2@com', 'm3@Submission']);
      assert.deepEqual(await entries('-not Recipients -like "*@example.com"'), ['m1@org']);
      assert.deepEqual(await entries('(Queue -eq com -or Queue -eq org) -and -not (FromAddress -eq x@example.net)'), ['m1@com', 'm1@org']);
      assert.deepEqual(await entries('LastError -notlike "*timed out*"'), ['m1@com', 'm1@org', 'm3@Submission'], 'no LastError is not like it');
      assert.deepEqual(await entries('-not LastError -like "*"'), ['m1@com', 'm1@org', 'm3@Submission']);
      assert.deepEqual(await entries('LastError -like "*timed*"'), ['m2@com']);
      assert.deepEqual(await entries('Subject -eq m1 -and Queue -eq org -or Subject -eq m3'), ['m1@org', 'm3@Submission'], '-and before -or');
      assert.deepEqual(await entries('Subject -notlike "m%" -and -not -not Status -eq ready'), ['m1@com', 'm1@org', 'm2@com', 'm3@Submission']);
      assert.deepEqual(await entries(`Recipients -eq "x' OR 1=1 --" -or Recipients -like "%"`), [], 'values stay values; % is literal');
    });
  });
}

describeFilters('sqlite', openSqlite);
if (NO_PG) it('filter trees on PostgreSQL', { skip: NO_PG }, () => undefined);
else describeFilters('postgres', (location, clock) => openPg(location, clock));

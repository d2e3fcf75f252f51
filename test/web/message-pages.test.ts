// Keyset paging of the web viewer's message list (issue 15, MG-4, QU-3) on the
// real stores, SQLite and (with SLUICE_TEST_PG_URL) PostgreSQL: page after
// page gives every entry once, in list order, a message in two queues and one
// still in Submission included, with and without a filter.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { listMessagePage } from '../../src/management/message-pages.js';
import type { MessageDeps } from '../../src/management/messages.js';
import { openSqliteStore } from '../../src/store/sqlite/store.js';
import type { QueueStore } from '../../src/store/types.js';
import { TestClock } from '../../src/clock.js';
import { freshStore, route, storeMessage, type OpenStore } from '../store/conformance.js';
import { NO_PG, openPg } from '../store/postgres-support.js';

const openSqlite: OpenStore = (dir, clock) => openSqliteStore({ dataDir: dir, clock, poisonThreshold: 2, owner: 'test/1', leaseTimeout: 60_000 });

/** m1 in "com" and "org", m2 in "com", m3 still in Submission, m4 in "org". */
async function populate(store: QueueStore) {
  const rcpt = (...addresses: string[]) => addresses.map((address) => ({ address }));
  await storeMessage(store, Buffer.from('1\r\n'), { subject: 'm1', mailFrom: 'a@example.net', recipients: rcpt('b@example.com', 'c@example.org') });
  await storeMessage(store, Buffer.from('2\r\n'), { subject: 'm2', mailFrom: 'x@example.net', recipients: rcpt('d@example.com') });
  const [one, two] = await store.claimSubmission(2, 0);
  const m1 = route(one!, 'com', [0]);
  await store.routeMessages([{ ...m1, items: [...m1.items, ...route(one!, 'org', [1]).items] }, route(two!, 'com', [0])]);
  await storeMessage(store, Buffer.from('3\r\n'), { subject: 'm3', mailFrom: 'a@example.net', recipients: rcpt('e@example.com') });
  await storeMessage(store, Buffer.from('4\r\n'), { subject: 'm4', mailFrom: 'a@example.net', recipients: rcpt('f@example.org') });
  const [four] = (await store.claimSubmission(2, 0)).filter((m) => m.message.subject === 'm4');
  await store.routeMessages([route(four!, 'org', [0])]);
}

function describePages(backend: string, open: OpenStore) {
  describe(`message pages on ${backend}`, () => {
    it('pages through every entry once, in list order', async (t) => {
      const { store } = await freshStore(t, open);
      await populate(store);
      const deps = { node: 'n1', store, clock: new TestClock() } as unknown as MessageDeps;
      const walk = async (filter: string | undefined, size: number) => {
        const pages: string[][] = [];
        let after: string | undefined;
        for (let i = 0; i < 10; i++) {
          const page = await listMessagePage(deps, filter, after, size);
          pages.push(page.messages.map((m) => `${m.Subject}@${m.Queue}`));
          if (!page.next) break;
          after = page.next;
        }
        return pages;
      };
      const all = (await store.listMessages([], 100)).map((m) => `${m.subject}@n1/${m.queue}`);
      assert.equal(all.length, 5);
      assert.deepEqual((await walk(undefined, 1)).flat(), all);
      assert.deepEqual(await walk(undefined, 2), [all.slice(0, 2), all.slice(2, 4), all.slice(4)]);
      assert.deepEqual(await walk(undefined, 5), [all], 'a last page that is full has no next');
      const fromA = all.filter((entry) => !entry.startsWith('m2@'));
      assert.deepEqual((await walk('FromAddress -eq "a@example.net"', 1)).flat(), fromA);
      assert.deepEqual(await walk('Queue -eq org', 1), [['m1@n1/org'], ['m4@n1/org']]);
      await assert.rejects(listMessagePage(deps, undefined, 'nonsense', 1), /not a page cursor/);
    });
  });
}

describePages('sqlite', openSqlite);
if (NO_PG) it('message pages on PostgreSQL', { skip: NO_PG }, () => undefined);
else describePages('postgres', (location, clock) => openPg(location, clock));

// FIFO after an outage (QU-5, DL-9): while the next hop refuses connections, 30
// messages wait in their queue; when it comes back they must leave oldest
// first. With maxConnections: 3 three connections deliver side by side, so a
// message may be overtaken by at most 3 newer ones; with maxConnections: 1 the
// order is exact. Real sockets on 127.0.0.1 and the system clock.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { waitUntil } from '../support/clock.js';
import { startChaosHop, type ChaosHop } from '../support/chaos-hop.js';
import { expectCleanEnd, sluiceForHop, submitAll } from '../support/chaos-sluice.js';
import type { TestSluice } from '../support/sluice.js';

const COUNT = 30;
const subjects = Array.from({ length: COUNT }, (_, i) => `fifo ${String(i).padStart(2, '0')}`);

/** The outage, the 30 messages submitted one after another, the hop back; returns the subjects in order of arrival. */
async function arrivalsAfterOutage(t: TestContext, maxConnections: number): Promise<{ order: string[]; sluice: TestSluice; hop: ChaosHop }> {
  const hop = await startChaosHop(t, { fault: { refuseNew: 'close' } });
  const sluice = await sluiceForHop(t, hop, { name: 'fifo', maxConnections });
  await submitAll(sluice.port, subjects);
  // they wait: the hop has been tried (and refused) at least twice, nothing got through, all are still stored
  await hop.waitUntil(() => hop.connections >= 2, 5_000, 'two refused connection attempts');
  await waitUntil(async () => (await sluice.sluice.store.stats()).messages === COUNT, 5_000);
  assert.equal(hop.messages.length, 0, 'nothing can arrive during the outage');
  hop.setFault(undefined);
  await hop.waitForMessages(COUNT, { timeoutMs: 15_000 });
  const order: string[] = [];
  for (const message of hop.messages) if (message.subject && !order.includes(message.subject)) order.push(message.subject);
  return { order, sluice, hop };
}

describe('FIFO after an outage (QU-5, DL-9)', () => {
  it('QU-5, DL-9: with maxConnections 3, no message arrives more than 3 places after a newer one', async (t) => {
    const { order, sluice, hop } = await arrivalsAfterOutage(t, 3);
    t.diagnostic(`arrival order: ${order.map((s) => s.slice(5)).join(' ')}`);
    const arrival = new Map(order.map((subject, index) => [subject, index]));
    const late: string[] = [];
    for (let i = 0; i < COUNT; i++) {
      for (let j = i + 1; j < COUNT; j++) {
        const behind = arrival.get(subjects[i]!)! - arrival.get(subjects[j]!)!;
        if (behind > 3) late.push(`${subjects[i]} arrived ${behind} places after ${subjects[j]}`);
      }
    }
    assert.deepEqual(late.slice(0, 10), [], `arrival order: ${order.map((s) => s.slice(5)).join(' ')}`);
    await expectCleanEnd(sluice, hop, { subjects });
  });

  it('QU-5, DL-9: with maxConnections 1 they arrive exactly in the order they were received', async (t) => {
    const { order, sluice, hop } = await arrivalsAfterOutage(t, 1);
    assert.deepEqual(order, subjects);
    await expectCleanEnd(sluice, hop, { subjects });
  });
});

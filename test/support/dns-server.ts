// A real DNS server on loopback (UDP) for MX tests, answering from a zone
// table: MX, A, AAAA records, NXDOMAIN, or SERVFAIL per name.
import { createSocket } from 'node:dgram';
import type { TestContext } from 'node:test';
import dnsPacket from 'dns-packet';

export type Zone = Record<string, { mx?: Array<{ priority: number; exchange: string }>; a?: string[]; aaaa?: string[] } | 'NXDOMAIN' | 'SERVFAIL'>;

export async function startDnsServer(t: Pick<TestContext, 'after'>, zone: Zone): Promise<{ address: string; queries: string[] }> {
  const socket = createSocket('udp4');
  const queries: string[] = [];
  socket.on('message', (message, remote) => {
    const query = dnsPacket.decode(message);
    const question = query.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase();
    queries.push(`${question.type} ${name}`);
    const entry = zone[name];
    const rcode = entry === 'NXDOMAIN' ? 'NXDOMAIN' : entry === 'SERVFAIL' ? 'SERVFAIL' : entry ? 'NOERROR' : 'NXDOMAIN';
    const answers: dnsPacket.Answer[] = [];
    if (typeof entry === 'object') {
      if (question.type === 'MX') for (const mx of entry.mx ?? []) answers.push({ type: 'MX', name, ttl: 60, data: { preference: mx.priority, exchange: mx.exchange } });
      if (question.type === 'A') for (const a of entry.a ?? []) answers.push({ type: 'A', name, ttl: 60, data: a });
      if (question.type === 'AAAA') for (const aaaa of entry.aaaa ?? []) answers.push({ type: 'AAAA', name, ttl: 60, data: aaaa });
    }
    const reply = dnsPacket.encode({
      type: 'response',
      id: query.id,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (rcode === 'NXDOMAIN' ? 3 : rcode === 'SERVFAIL' ? 2 : 0),
      questions: query.questions,
      answers,
    });
    socket.send(reply, remote.port, remote.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  t.after(() => socket.close());
  return { address: `127.0.0.1:${socket.address().port}`, queries };
}

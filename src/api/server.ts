// The HTTP management server (MG-4, MG-5): JSON API under /api/v1/, Prometheus
// /metrics and /healthz, on fastify. Every route but /healthz needs the bearer
// token; every error is RFC 9457 problem JSON. Thin: the operations live in
// management/.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyReply } from 'fastify';
import { Gauge, Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import type { DeliveryManager } from '../delivery/queue-manager.js';
import { FilterError, matchesFilter, parseFilter } from '../management/filter.js';
import { QUEUE_PROPERTIES, listQueues } from '../management/queues.js';
import type { Logger } from '../observability/logger.js';
import type { QueueStore } from '../store/types.js';

export interface ManagementServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/** RFC 9457 problem details, the one error shape of the API. */
function problem(reply: FastifyReply, status: number, title: string, detail: string) {
  return reply.code(status).type('application/problem+json').send({ type: 'about:blank', title, status, detail });
}

const digest = (value: string) => createHash('sha256').update(value).digest();

export async function startManagementServer(deps: {
  listen: { host: string; port: number };
  token: string;
  node: string;
  store: QueueStore;
  delivery: DeliveryManager;
  clock: Clock;
  logger: Logger;
}): Promise<ManagementServer> {
  const logger = deps.logger.child({ module: 'api' });
  // unknown query parameters are refused, not silently dropped
  const app = Fastify({ logger: false, ajv: { customOptions: { removeAdditional: false } } });
  const expected = digest(`Bearer ${deps.token}`);

  const registry = new Registry();
  new Gauge({
    name: 'sluice_queue_messages',
    help: 'Messages in each queue',
    labelNames: ['queue', 'delivery_type'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const queue of await deps.store.listQueues()) this.set({ queue: `${deps.node}/${queue.name}`, delivery_type: queue.deliveryType }, queue.messageCount);
    },
  });
  new Gauge({
    name: 'sluice_store_messages',
    help: 'Messages in the queue store',
    registers: [registry],
    async collect() {
      this.set((await deps.store.stats()).messages);
    },
  });
  new Gauge({
    name: 'sluice_store_bytes',
    help: 'Message bytes in the queue store',
    registers: [registry],
    async collect() {
      this.set((await deps.store.stats()).bodyBytes);
    },
  });

  app.addHook('onRequest', async (request, reply) => {
    if (request.url === '/healthz') return;
    const given = request.headers.authorization ?? '';
    if (!timingSafeEqual(digest(given), expected)) {
      return problem(reply.header('www-authenticate', 'Bearer'), 401, 'Unauthorized', 'a valid bearer token is required (management.token)');
    }
  });
  app.setNotFoundHandler((request, reply) => problem(reply, 404, 'Not Found', `no route ${request.method} ${request.url}`));
  app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
    if (error instanceof FilterError) return problem(reply, 400, 'Bad filter', error.message);
    if (error.statusCode && error.statusCode < 500) return problem(reply, error.statusCode, 'Bad Request', error.message);
    logger.error({ err: error }, 'management request failed');
    return problem(reply, 500, 'Internal Server Error', 'the request failed; see the server log');
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/metrics', async (_request, reply) => reply.type(registry.contentType).send(await registry.metrics()));
  app.get<{ Querystring: { filter?: string } }>(
    '/api/v1/queues',
    { schema: { querystring: { type: 'object', properties: { filter: { type: 'string' } }, additionalProperties: false } } },
    async (request) => {
      const queues = await listQueues(deps);
      const filter = request.query.filter ? parseFilter(request.query.filter) : [];
      return queues.filter((queue) => matchesFilter(filter, queue as unknown as Record<string, unknown>, QUEUE_PROPERTIES, deps.clock.now()));
    },
  );

  await app.listen({ host: deps.listen.host, port: deps.listen.port });
  const address = app.server.address() as AddressInfo;
  logger.info({ address: address.address, port: address.port }, 'management listening');
  return { address, close: () => app.close() };
}

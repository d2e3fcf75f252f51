// The HTTP management server (MG-4, MG-5): JSON API under /api/v1/, Prometheus
// /metrics and /healthz, on fastify with JSON-schema-validated input. Every
// route but /healthz needs the bearer token; every error is RFC 9457 problem
// JSON. Thin: the operations live in management/.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyReply } from 'fastify';
import { ConfigError, formatProblem, parseConfigText } from '../config/load.js';
import { ManagementError } from '../management/errors.js';
import { FilterError } from '../management/filter.js';
import { listListeners, setListenerSuspended, type ListenerDeps } from '../management/listeners.js';
import { exportMessage, listMessages, messageContent, planMessageAction, removeMessages, resumeMessages, suspendMessages, type MessageDeps } from '../management/messages.js';
import { actOnQueues, listQueues, type QueueDeps } from '../management/queues.js';
import type { Reconfigurer } from '../management/reconfigure.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { TrackingLog } from '../observability/tracking.js';
import { isWebPath, webViewer } from '../web/plugin.js';
import {
  errorResponses,
  listenerSchema,
  messageActionSchema,
  messageListSchema,
  queueActionSchema,
  queueSchema,
  reloadPlanSchema,
  trackingSchema,
} from './schemas.js';

export interface ManagementServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

export type ManagementDeps = QueueDeps & MessageDeps & ListenerDeps & { tracking: TrackingLog; metrics: Metrics; reconfigurer: Reconfigurer };

/** RFC 9457 problem details, the one error shape of the API. */
function problem(reply: FastifyReply, status: number, title: string, detail: string) {
  return reply.code(status).type('application/problem+json').send({ type: 'about:blank', title, status, detail });
}

const digest = (value: string) => createHash('sha256').update(value).digest();

const MAX_LIST = 100_000;
const selector = {
  identity: { type: 'string', minLength: 1, description: 'one identity; or give filter' },
  filter: { type: 'string', minLength: 1, description: 'a filter expression (MG-1); or give identity' },
} as const;
const dryRun = { type: 'boolean', description: 'do nothing: answer what the action would apply to' } as const;
const listLimit = { type: 'integer', minimum: 1, maximum: MAX_LIST, default: 1000 } as const;
/** Response schemas: the answer (200) and problem JSON for every error. */
const answers = (ok: object) => ({ 200: ok, ...errorResponses });
const rfc822 = (description: string) => ({ 200: { description, content: { 'message/rfc822': { schema: { type: 'string', format: 'binary' } } } }, ...errorResponses });
const strict = <P extends object>(properties: P) => ({ type: 'object', properties, additionalProperties: false }) as const;

export async function startManagementServer(deps: ManagementDeps & { listen: { host: string; port: number }; token: string; logger: Logger }): Promise<ManagementServer> {
  const logger = deps.logger.child({ module: 'api' });
  // unknown properties and query parameters are refused, not silently dropped
  const app = Fastify({ logger: false, ajv: { customOptions: { removeAdditional: false, coerceTypes: true } } });
  const expected = digest(`Bearer ${deps.token}`);
  // the OpenAPI document is generated from the route schemas below
  await app.register(swagger, {
    openapi: {
      info: { title: 'Sluice management API', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });

  app.addHook('onRequest', async (request, reply) => {
    // the web viewer (/ and /ui/) checks its own session instead
    if (request.url === '/healthz' || isWebPath(request.url)) return;
    const given = request.headers.authorization ?? '';
    if (!timingSafeEqual(digest(given), expected)) {
      return problem(reply.header('www-authenticate', 'Bearer'), 401, 'Unauthorized', 'a valid bearer token is required (management.token)');
    }
  });
  app.setNotFoundHandler((request, reply) => problem(reply, 404, 'Not Found', `no route ${request.method} ${request.url}`));
  app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
    if (error instanceof FilterError) return problem(reply, 400, 'Bad filter', error.message);
    if (error instanceof ManagementError) return problem(reply, error.status, error.title, error.message);
    if (error instanceof ConfigError) return problem(reply, 400, 'Invalid configuration', `${error.source}: ${error.problems.map(formatProblem).join('; ')}`);
    if (error.statusCode && error.statusCode < 500) return problem(reply, error.statusCode, 'Bad Request', error.message);
    logger.error({ err: error }, 'management request failed');
    return problem(reply, 500, 'Internal Server Error', 'the request failed; see the server log');
  });

  await app.register(webViewer, deps);

  app.get('/healthz', { schema: { summary: 'Liveness; needs no token', security: [] } }, async () => ({ status: 'ok' }));
  app.get('/api/v1/openapi.json', { schema: { summary: 'This API as an OpenAPI 3 document' } }, async () => app.swagger());
  app.get('/metrics', { schema: { summary: 'Prometheus metrics' } }, async (_request, reply) => reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics()));

  // queues (MG-2)
  app.get<{ Querystring: { filter?: string } }>(
    '/api/v1/queues',
    { schema: { summary: 'List queues (QU-2), optionally filtered', querystring: strict({ filter: selector.filter }), response: answers({ type: 'array', items: queueSchema }) } },
    (request) => listQueues(deps, request.query.filter),
  );
  app.post<{ Params: { action: 'suspend' | 'resume' | 'retry' }; Body: { identity?: string; filter?: string; resubmit?: boolean; dryRun?: boolean } }>(
    '/api/v1/queues/:action',
    {
      schema: {
        summary: 'Suspend, resume or retry queues (MG-2); retry with resubmit sends their messages back to the categorizer',
        params: strict({ action: { type: 'string', enum: ['suspend', 'resume', 'retry'] } }),
        body: strict({ ...selector, resubmit: { type: 'boolean', description: 'retry only: send the messages back to the categorizer' }, dryRun }),
        response: answers(queueActionSchema),
      },
    },
    async (request) => {
      const { action } = request.params;
      const { resubmit, dryRun: dry, ...which } = request.body;
      if (resubmit && action !== 'retry') throw new ManagementError(400, 'Bad Request', 'resubmit goes with retry only');
      const queues = await actOnQueues(deps, which, resubmit ? 'resubmit' : action, dry === true);
      return dry ? { dryRun: true, queues } : { queues };
    },
  );

  // messages (MG-3)
  app.get<{ Querystring: { identity?: string; filter?: string; limit: number } }>(
    '/api/v1/messages',
    {
      schema: {
        summary: 'List messages (QU-3) by identity or filter, one entry per message and queue',
        querystring: strict({ ...selector, limit: listLimit }),
        response: answers(messageListSchema),
      },
    },
    (request) => {
      const { limit, ...which } = request.query;
      return listMessages(deps, which, limit);
    },
  );
  app.get<{ Querystring: { identity: string } }>(
    '/api/v1/messages/export',
    {
      schema: {
        summary: 'One message as .eml with X-Sender/X-Receiver envelope headers; it stays queued',
        querystring: { ...strict({ identity: selector.identity }), required: ['identity'] },
        response: rfc822('the replay format: X-Sender, X-Receiver, then the stored message'),
      },
    },
    async (request, reply) => {
      const { filename, content } = await exportMessage(deps, request.query.identity);
      return reply.type('message/rfc822').header('content-disposition', `attachment; filename="${filename}"`).send(Readable.from(content));
    },
  );
  app.get<{ Querystring: { identity: string; part: 'message' | 'headers' } }>(
    '/api/v1/messages/content',
    {
      schema: {
        summary: 'The stored message (our Received: header, then the message as received), or its header section only',
        querystring: {
          ...strict({
            identity: selector.identity,
            part: { type: 'string', enum: ['message', 'headers'], default: 'message', description: 'headers: up to and including the empty line that ends them' },
          }),
          required: ['identity'],
        },
        response: rfc822('the stored message'),
      },
    },
    async (request, reply) => reply.type('message/rfc822').send(Readable.from(await messageContent(deps, request.query.identity, request.query.part === 'headers'))),
  );
  app.post<{ Params: { action: 'suspend' | 'resume' | 'remove' }; Body: { identity?: string; filter?: string; ndr?: boolean; dryRun?: boolean; limit?: number } }>(
    '/api/v1/messages/:action',
    {
      schema: {
        summary: 'Suspend, resume or remove messages (MG-3); those being delivered become PendingSuspend / PendingRemove',
        params: strict({ action: { type: 'string', enum: ['suspend', 'resume', 'remove'] } }),
        body: strict({
          ...selector,
          ndr: { type: 'boolean', description: 'remove only: send the sender a non-delivery report' },
          dryRun,
          limit: { type: 'integer', minimum: 1, maximum: MAX_LIST, description: 'dryRun only: list at most this many (default 1000)' },
        }),
        response: answers(messageActionSchema),
      },
    },
    async (request) => {
      const { ndr, dryRun: dry, limit, ...which } = request.body;
      if (ndr !== undefined && request.params.action !== 'remove') throw new ManagementError(400, 'Bad Request', 'ndr goes with remove only');
      if (dry) return planMessageAction(deps, which, request.params.action, limit ?? 1000);
      if (limit !== undefined) throw new ManagementError(400, 'Bad Request', 'limit goes with dryRun only');
      switch (request.params.action) {
        case 'suspend':
          return suspendMessages(deps, which);
        case 'resume':
          return resumeMessages(deps, which);
        case 'remove':
          return removeMessages(deps, which, ndr ?? false);
      }
    },
  );
  app.get<{ Querystring: { messageId?: string; sender?: string; recipient?: string; queueId?: string; limit: number } }>(
    '/api/v1/tracking',
    {
      schema: {
        summary: 'Search the message tracking log (MG-5)',
        querystring: strict({
          messageId: { type: 'string', minLength: 1 },
          sender: { type: 'string' },
          recipient: { type: 'string', minLength: 1 },
          queueId: { type: 'string', minLength: 1 },
          limit: listLimit,
        }),
        response: answers(trackingSchema),
      },
    },
    async (request) => {
      const { limit, ...query } = request.query;
      if (Object.keys(query).length === 0) throw new ManagementError(400, 'Bad Request', 'give messageId, sender, recipient or queueId');
      return deps.tracking.search(query, limit);
    },
  );

  // configuration (RT-3, QU-7)
  app.post('/api/v1/config/reload', { schema: { summary: 'Read the config file again and apply it; an invalid file changes nothing (400)', response: answers(reloadPlanSchema) } }, () =>
    deps.reconfigurer.reload(),
  );
  app.post<{ Body: { yaml: string } }>(
    '/api/v1/config/plan',
    {
      schema: {
        summary: 'What a config would change, without changing anything: queues resubmitted and where their mail would go, listeners, restart-only keys',
        body: { ...strict({ yaml: { type: 'string', description: 'the candidate sluice.yaml' } }), required: ['yaml'] },
        response: answers(reloadPlanSchema),
      },
    },
    (request) => deps.reconfigurer.plan(parseConfigText(request.body.yaml, 'candidate config')),
  );

  // listeners (IN-7)
  app.get('/api/v1/listeners', { schema: { summary: 'List SMTP listeners (IN-7)', response: answers({ type: 'array', items: listenerSchema }) } }, async () => listListeners(deps));
  app.post<{ Params: { name: string; action: 'suspend' | 'resume' } }>(
    '/api/v1/listeners/:name/:action',
    {
      schema: {
        summary: 'Suspend (421 4.3.2 to new connections) or resume a listener (IN-7)',
        params: strict({ name: { type: 'string' }, action: { type: 'string', enum: ['suspend', 'resume'] } }),
        response: answers(listenerSchema),
      },
    },
    (request) => setListenerSuspended(deps, request.params.name, request.params.action === 'suspend'),
  );

  await app.listen({ host: deps.listen.host, port: deps.listen.port });
  const address = app.server.address() as AddressInfo;
  logger.info({ address: address.address, port: address.port }, 'management listening');
  return { address, close: () => app.close() };
}

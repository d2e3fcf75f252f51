// JSON schemas of the management API's answers: one shape per kind of answer,
// in the OpenAPI document (GET /api/v1/openapi.json) and used by fastify to
// serialize them. An object without additionalProperties: true would lose the
// properties it does not name, so every shape names all of its properties.
import { MESSAGE_STATUSES } from '../management/messages.js';
import { QUEUE_STATUSES } from '../management/queues.js';

const nullable = (type: 'string' | 'integer' | 'number', description?: string) => ({ type: [type, 'null'], ...(description ? { description } : {}) }) as const;
const object = <P extends Record<string, unknown>>(properties: P, description?: string) =>
  ({ type: 'object', properties, required: Object.keys(properties), additionalProperties: false, ...(description ? { description } : {}) }) as const;

/** RFC 9457 problem details: every error of the API. */
export const problemSchema = {
  type: 'object',
  description: 'RFC 9457 problem details (application/problem+json)',
  properties: {
    type: { type: 'string', description: 'always about:blank' },
    title: { type: 'string', description: 'the kind of error: Bad Request, Bad filter, Unauthorized, Not Found, Conflict, ...' },
    status: { type: 'integer', description: 'the HTTP status' },
    detail: { type: 'string', description: 'what went wrong, for a person' },
  },
  required: ['type', 'title', 'status', 'detail'],
  additionalProperties: false,
} as const;

export const errorResponses = { '4xx': problemSchema, '5xx': problemSchema } as const;

export const queueSchema = object({
  Identity: { type: 'string', description: '<node>/<next hop>' },
  DeliveryType: { type: 'string', description: 'SmartHostConnectorDelivery, DnsConnectorDelivery, Unreachable or Undefined' },
  NextHopDomain: { type: 'string' },
  NextHopConnector: nullable('string', 'the route of a smart-host queue'),
  Status: { type: 'string', enum: [...QUEUE_STATUSES] },
  MessageCount: { type: 'integer' },
  LastError: nullable('string'),
  LastRetryTime: nullable('string', 'ISO 8601'),
  NextRetryTime: nullable('string', 'ISO 8601'),
});

export const queueActionSchema = {
  type: 'object',
  properties: {
    dryRun: { type: 'boolean', description: 'present (true) when nothing was done: the queues the action would apply to' },
    queues: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          Identity: { type: 'string' },
          Action: { type: 'string', enum: ['suspend', 'resume', 'retry', 'resubmit'] },
          Messages: { type: 'integer', description: 'retry: messages made ready; resubmit: messages sent back to the categorizer (absent in a dry run)' },
        },
        required: ['Identity', 'Action'],
        additionalProperties: false,
      },
    },
  },
  required: ['queues'],
  additionalProperties: false,
} as const;

export const messageSchema = object({
  Identity: { type: 'string', description: '<node>/<queue>/<id>' },
  Queue: { type: 'string', description: '<node>/<queue>' },
  Status: { type: 'string', enum: [...MESSAGE_STATUSES] },
  DateReceived: { type: 'string', description: 'ISO 8601' },
  ExpirationTime: nullable('string', 'ISO 8601'),
  FromAddress: { type: 'string', description: 'the envelope sender ("" for <>)' },
  InternetMessageId: nullable('string'),
  LastError: nullable('string'),
  MessageSourceName: { type: 'string', description: 'the listener, pickup, replay, or dsn for reports Sluice wrote' },
  RetryCount: { type: 'integer' },
  SCL: { type: 'null', description: 'always null: Sluice does no content filtering' },
  Size: { type: 'integer', description: 'bytes' },
  SourceIP: { type: 'string' },
  Subject: nullable('string', 'decoded (RFC 2047)'),
  Recipients: {
    type: 'array',
    description: 'the recipients this queue carries (all of them in Submission)',
    items: object({ Address: { type: 'string' }, Status: { type: 'string', enum: ['Ready', 'Delivered', 'Failed'] }, LastError: nullable('string') }),
  },
});

export const messageListSchema = object({
  messages: { type: 'array', items: messageSchema },
  truncated: { type: 'boolean', description: 'more matched than the limit' },
});

/** The answer of a message action: what it did, or with dryRun what it would do. */
export const messageActionSchema = {
  oneOf: [
    object({ Suspended: { type: 'integer' }, PendingSuspend: { type: 'integer', description: 'being delivered: suspended when the attempt ends' } }, 'suspend'),
    object({ Resumed: { type: 'integer' } }, 'resume'),
    object({ Removed: { type: 'integer' }, PendingRemove: { type: 'integer', description: 'being delivered: removed when the attempt ends' } }, 'remove'),
    object(
      {
        dryRun: { type: 'boolean', enum: [true] },
        action: { type: 'string', enum: ['suspend', 'resume', 'remove'] },
        messages: { type: 'array', items: messageSchema, description: 'the entries the action would act on now (Active ones would become Pending...)' },
        truncated: { type: 'boolean', description: 'more would be acted on than the limit' },
      },
      'dry run: nothing was done',
    ),
  ],
} as const;

export const trackingSchema = object({
  events: {
    type: 'array',
    items: {
      type: 'object',
      description: 'one tracking event: time, event, queueId, messageId, sender, recipients and the fields of its kind (see docs/management.md)',
      properties: {
        time: { type: 'string' },
        event: { type: 'string' },
        queueId: { type: 'string' },
        sender: { type: 'string' },
        recipients: { type: 'array', items: { type: 'string' } },
      },
      required: ['time', 'event'],
      additionalProperties: true,
    },
  },
  truncated: { type: 'boolean' },
});

export const listenerSchema = object({ Name: { type: 'string' }, Address: { type: 'string', description: 'host:port' }, Status: { type: 'string', enum: ['Active', 'Suspended'] } });

export const reloadPlanSchema = {
  type: 'object',
  description: 'the reload plan (docs/management.md, Reload plan)',
  properties: {
    Queues: { type: 'array', items: { type: 'object', additionalProperties: true } },
    Listeners: { type: 'array', items: { type: 'object', additionalProperties: true } },
    Routes: { type: 'array', items: { type: 'object', additionalProperties: true } },
    RestartNeeded: { type: 'array', items: { type: 'string' } },
  },
  additionalProperties: true,
} as const;

// The one schema of sluice.yaml (SPEC §8): every key, its type, its default
// and its documentation. docs/configuration.md is generated from it
// (`npm run docs:config`) and a test keeps the two in step.
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { z } from 'zod';
import { anyDomainMatches } from './domain-pattern.js';
import { parseDuration, parseListenAddress, parseSize } from './units.js';

function unitValue(parse: typeof parseSize, example: string) {
  return z
    .union([z.string(), z.number()])
    .transform((input, ctx) => {
      const result = parse(input);
      if (!result.ok) {
        ctx.addIssue({ code: 'custom', message: result.error });
        return z.NEVER;
      }
      return result.value;
    })
    .meta({ format: parse === parseSize ? 'size' : 'duration', examples: [example] });
}

/** A size such as `35MB`, parsed to bytes. */
export const size = (example = '35MB') => unitValue(parseSize, example);
/** A duration such as `5m`, parsed to milliseconds. */
export const duration = (example = '5m') => unitValue(parseDuration, example);

const listenAddress = z.string().transform((input, ctx) => {
  const result = parseListenAddress(input);
  if (!result.ok) {
    ctx.addIssue({ code: 'custom', message: result.error });
    return z.NEVER;
  }
  return { text: input, host: result.host, port: result.port };
});

const network = z.string().refine(
  (value) => {
    const [address, prefix, extra] = value.split('/');
    const family = isIP(address ?? '');
    if (family === 0 || extra !== undefined) return false;
    if (prefix === undefined) return true;
    const bits = Number(prefix);
    return /^\d+$/.test(prefix) && bits <= (family === 4 ? 32 : 128);
  },
  { message: 'expected an IP address or CIDR network, e.g. 10.0.0.0/8 or ::1/128' },
);

const domainPattern = z
  .string()
  .regex(/^(\*|(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*)$/, 'expected a domain, "*.suffix" or "*"')
  .transform((value) => value.toLowerCase());

const count = (fallback: number) => z.number().int().min(1).default(fallback);

const listenerSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, "_", "." and "-" only').describe('Name used in logs and as the MessageSourceName of messages it accepts.'),
    listen: listenAddress.describe('Address and port, `host:port` or `[v6]:port`; port 0 picks a free port.'),
    maxMessageSize: size('35MB').prefault('35MB').describe('Largest message accepted (SIZE); larger gets `552 5.3.4` at MAIL (declared) or after DATA.'),
    maxRecipients: count(1000).describe('Recipients per transaction; more get `452 4.5.3`.'),
    maxConnections: count(1000).describe('Simultaneous sessions on this listener; more get `421 4.7.0` and are closed.'),
    maxConnectionsPerIp: count(50).describe('Simultaneous sessions from one client IP; more get `421 4.7.0`.'),
    maxLineLength: z.number().int().min(78).default(998).describe('Longest body line in octets without CRLF (RFC 5322 §2.1.1); longer gets `554 5.6.0` after DATA. Sluice relays bytes unchanged, so it refuses rather than folds.'),
    idleTimeout: duration('5m').prefault('5m').describe('A session that sends nothing for this long is closed with `421 4.4.2`.'),
    sessionTimeout: duration('30m').prefault('30m').describe('Longest total session; then `421 4.4.2` and close.'),
    tls: z
      .strictObject({
        cert: z.string().describe('PEM certificate chain file.'),
        key: z.string().describe('PEM private key file.'),
      })
      .optional()
      .describe('When set, STARTTLS is offered.'),
    allowInsecureAuth: z.boolean().default(false).describe('Offer AUTH before STARTTLS. Leave false unless the network itself is trusted.'),
  })
  .describe('An SMTP listener (IN-1).');

const hostPort = z
  .string()
  .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d+)?$/, 'expected host or host:port, e.g. mail1.internal:25 or [10.0.0.5]:2525')
  .refine((value) => {
    const port = /:(\d+)$/.exec(value)?.[1];
    return port === undefined || (Number(port) >= 1 && Number(port) <= 65535);
  }, 'port out of range: a port is 1 to 65535');

const routeSchema = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, "_", "." and "-" only').describe('Route name: the NextHopConnector of its queues, and the queue name of smart-host routes.'),
    match: z.array(domainPattern).min(1).describe('Recipient domains: exact, `*.suffix` or `*`. Routes are tried in order; the first match wins.'),
    smartHosts: z.array(hostPort).min(1).optional().describe('Next hops in priority order (`host:port`, port 25 by default); the next is tried when one cannot be reached.'),
    mx: z.boolean().optional().describe('Deliver to the recipient domain\'s MX hosts (A/AAAA when it has none; null MX fails at once).'),
    port: z.number().int().min(1).max(65535).default(25).describe('Port for MX delivery.'),
    protocol: z.enum(['smtp', 'lmtp']).default('smtp').describe('Protocol spoken to the next hop.'),
    tls: z.enum(['none', 'opportunistic', 'required']).default('opportunistic').describe('STARTTLS policy: never, when offered, or always (delivery waits when the next hop has no TLS). Certificates are not verified.'),
    maxConnections: count(20).describe('Simultaneous connections to this next hop (per queue).'),
    maxMessageSize: size('35MB').optional().describe('Largest message this route takes; larger messages fail with `552 5.3.4` for its recipients.'),
    bounceProfile: z.string().default('default').describe('Name of the bounce profile (retry schedule) for this route.'),
    enabled: z.boolean().default(true).describe('A disabled route keeps its place: its recipients wait in Unreachable.'),
  })
  .refine((route) => (route.smartHosts === undefined) !== (route.mx !== true), { message: 'a route needs exactly one of `smartHosts` or `mx: true`' })
  .describe('A route (RT-1).');

const bounceProfileSchema = z
  .strictObject({
    initialRetry: duration('60s').prefault('60s').describe('Wait before the first retry of a deferred recipient (DL-4).'),
    backoff: z.number().min(1).default(2).describe('Factor by which each wait grows.'),
    maxRetry: duration('3600s').prefault('3600s').describe('Longest wait between retries.'),
    maxRetries: z.number().int().min(1).default(100).describe('Attempts after which a recipient fails with `4.4.7` (DL-5).'),
    maxQueueLifetime: duration('72h').prefault('72h').describe('Time in the queue after which a recipient fails with `4.4.7` (DL-5), whichever comes first.'),
    delayNotification: duration('4h').prefault('4h').describe('Time after which the sender gets one delay notice per recipient (DL-6), if NOTIFY allows.'),
  })
  .describe('A bounce profile: how deferred recipients are retried.');

export const configSchema = z
  .strictObject({
    node: z.string().regex(/^[A-Za-z0-9_.-]+$/).default(hostname().split('.')[0] || 'sluice').meta({ defaultText: 'the short host name' }).describe('Name of this node, used in queue identities and Reporting-MTA; unique among the nodes that share a PostgreSQL queue store.'),
    hostname: z.string().min(1).default(hostname()).meta({ defaultText: 'the host name' }).describe('Name announced in the SMTP greeting and Received headers.'),
    dataDir: z.string().default('./sluice-data').describe('Directory of the queue store (relative to the working directory).'),
    listeners: z
      .array(listenerSchema)
      .min(1)
      .prefault([{ name: 'default', listen: '127.0.0.1:2525' }])
      .describe('SMTP listeners.'),
    acceptedDomains: z.array(domainPattern).default([]).meta({ defaultText: '`[]` (none)' }).describe('Domains taken from anyone (exact or `*.suffix`, IN-4).'),
    relay: z
      .strictObject({
        allowFrom: z.array(network).default(['127.0.0.0/8', '::1/128']).describe('Networks that may send to any domain.'),
      })
      .prefault({})
      .describe('Relay policy (IN-4): other senders get `550 5.7.1` for domains not accepted.'),
    auth: z
      .strictObject({
        users: z
          .array(
            z.strictObject({
              username: z.string().min(1).describe('Name given in AUTH.'),
              password: z.string().min(1).describe('Plain text, or `scrypt$<salt base64>$<key base64>` (64-byte key, N=16384, r=8, p=1).'),
            }),
          )
          .default([])
          .describe('Users for SMTP AUTH PLAIN/LOGIN; authenticated users may relay to any domain.'),
      })
      .prefault({})
      .describe('SMTP authentication (IN-1). AUTH is offered only when users exist, and only after STARTTLS unless the listener allows it.'),
    routes: z
      .array(routeSchema)
      .prefault([{ name: 'internet', match: ['*'], mx: true }])
      .describe('Routing table (RT-1); the first route whose `match` covers the recipient domain wins. No match: Unreachable (RT-2).'),
    bounceProfiles: z
      .record(z.string().regex(/^[A-Za-z0-9_.-]+$/), bounceProfileSchema)
      .prefault({})
      .transform((profiles): Record<string, z.output<typeof bounceProfileSchema>> => ({ default: bounceProfileSchema.parse({}), ...profiles }))
      .describe('Named bounce profiles; `default` always exists.'),
    retry: z
      .strictObject({
        glitchRetryCount: z.number().int().min(0).default(4).describe('Quick retries after a next hop first cannot be reached (DL-3).'),
        glitchRetryInterval: duration('1m').prefault('1m').describe('Wait between glitch retries.'),
        transientFailureRetryCount: z.number().int().min(0).default(6).describe('Retries after the glitch retries.'),
        transientFailureRetryInterval: duration('5m').prefault('5m').describe('Wait between transient-failure retries.'),
        outboundConnectionFailureRetryInterval: duration('10m').prefault('10m').describe('Wait between retries after those.'),
        maxIdleTimeBeforeResubmit: duration('12h').prefault('12h').describe('A queue in Retry that delivered nothing for this long sends its messages back to the categorizer (DL-7).'),
      })
      .prefault({})
      .describe('Queue-level connection retry (DL-3): a queue whose next hop cannot be reached goes to Retry.'),
    dsn: z
      .strictObject({
        postmaster: z.string().regex(/^[^\s@<>]+@[^\s@<>]+$/).optional().meta({ defaultText: '`postmaster@` + hostname' }).describe('From address of delivery status notifications, and where mail to <postmaster> (without a domain) is sent.'),
        internalDelay: z.boolean().default(true).describe('Send delay notices to senders in accepted domains.'),
        externalDelay: z.boolean().default(true).describe('Send delay notices to other senders.'),
        returnContentLimit: size('10MB').prefault('10MB').describe('Larger originals are returned as headers only, even with RET=FULL.'),
      })
      .prefault({})
      .describe('Delivery status notifications (DS-1..DS-3).'),
    delivery: z
      .strictObject({
        connectTimeout: duration('30s').prefault('30s').describe('Time to connect, get the greeting and finish EHLO (and STARTTLS). A next hop that takes longer counts as not reachable.'),
        commandTimeout: duration('5m').prefault('5m').describe('Longest silence of the next hop while a command waits for its reply (RFC 5321 §4.5.3.2: 5 minutes), or while the message body does not move. The connection is then closed and its message deferred.'),
        dataTimeout: duration('10m').prefault('10m').describe('Longest wait for the reply to the end of the message, once the body is sent (RFC 5321 §4.5.3.2.6: 10 minutes).'),
      })
      .prefault({})
      .describe('Outbound SMTP/LMTP client.'),
    dns: z
      .strictObject({
        servers: z.array(z.string()).optional().describe('Resolvers as `ip` or `ip:port` (`[v6]:port`); the system resolver when absent.'),
        timeout: duration('5s').prefault('5s').describe('Time for one DNS query.'),
      })
      .prefault({})
      .describe('DNS for MX routes (RT-4).'),
    pickup: z
      .strictObject({
        dir: z.string().optional().describe('Pickup directory (IN-8): an `.eml` file here is submitted with the envelope taken from its From/Sender and To/Cc/Bcc headers (Bcc is removed). Write a file under another name, then rename it to `*.eml`. Not watched when absent.'),
        replayDir: z.string().optional().describe('Replay directory (IN-8): `.eml` files that start with `X-Sender:` / `X-Receiver:` envelope headers, as `sluice message export` writes them. Not watched when absent.'),
        badmailDir: z.string().optional().meta({ defaultText: '`<dataDir>/badmail`' }).describe('Where files that cannot be submitted go, each with a `.reason` file beside it.'),
        maxMessageSize: size('35MB').prefault('35MB').describe('Larger files go to badmail.'),
      })
      .prefault({})
      .describe('Pickup and replay directories (IN-8). A file is deleted only once its message is durable in the store.'),
    poison: z
      .strictObject({
        crashThreshold: z
          .number()
          .int()
          .min(1)
          .default(2)
          .describe('A message that was being categorized or delivered when Sluice died this many times moves to the suspended `<node>/Poison` queue (QU-6).'),
      })
      .prefault({})
      .describe('Poison queue (QU-6).'),
    storage: z
      .strictObject({
        backend: z
          .enum(['sqlite', 'postgres'])
          .default('sqlite')
          .describe('Queue store backend: `sqlite` (embedded, in `dataDir`, one node) or `postgres` (one PostgreSQL database shared by several nodes, each with its own `node` name; see docs/cluster.md).'),
        leaseTimeout: duration('30s').prefault('30s').describe('Every claim on a message (by the categorizer, a delivery attempt, an expiry or a removal) is a lease renewed while the work runs; one not renewed for this long is taken back and handed out again. With `postgres`, a node silent this long loses its claims to the other nodes.'),
        postgres: z
          .strictObject({
            url: z.string().min(1).optional().describe('Connection URL, e.g. `postgres://sluice:secret@db.internal:5432/sluice` (libpq parameters such as `sslmode=require` go in the query string). Required with `backend: postgres`.'),
            schema: z
              .string()
              .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a schema name of lower-case letters, digits and _')
              .optional()
              .meta({ defaultText: 'the search_path of the connection' })
              .describe('Schema of the queue tables, created at the first start if missing. Every node of a cluster names the same one.'),
            poolSize: z.number().int().min(1).max(100).default(8).describe('Connections a node keeps to the database for its queue work, besides the one that commits acceptances.'),
            leaseTimeout: duration('30s').optional().meta({ defaultText: '`storage.leaseTimeout`' }).describe('`storage.leaseTimeout` under another name; when set, it takes precedence.'),
          })
          .prefault({})
          .describe('PostgreSQL queue store (`backend: postgres`).'),
        limits: z
          .strictObject({
            maxQueuedMessages: z.number().int().min(1).default(1_000_000).describe('Messages in the store at which new mail is refused.'),
            maxQueuedBytes: size('10GB').prefault('10GB').describe('Message bytes in the store at which new mail is refused.'),
            minFreeDisk: size('1GB').prefault('1GB').describe('Free space on the data directory\'s disk (counting the free pages inside the queue database, which never shrinks) below which new mail is refused. Not checked with `postgres`: the database\'s disk is watched where the database runs.'),
          })
          .prefault({})
          .describe('Back-pressure (IN-6): past any limit, MAIL and RCPT get `452 4.3.1`; acceptance resumes below 90 % of the limits (free disk above 110 %). Accepted mail is never dropped. With `postgres`, messages and bytes count the whole cluster\'s queue.'),
      })
      .prefault({})
      .describe('Queue store (ST-1).'),
    management: z
      .strictObject({
        listen: listenAddress.prefault('127.0.0.1:8025').describe('Address of the HTTP management API (`/api/v1/`, `/metrics`, `/healthz`). Keep it on loopback or a management network.'),
        token: z.string().min(16).optional().meta({ defaultText: 'a random token written to `<dataDir>/management.token`' }).describe('Bearer token every route but `/healthz` requires.'),
      })
      .prefault({})
      .describe('Management API (MG-4).'),
    config: z
      .strictObject({
        watch: z
          .boolean()
          .default(false)
          .describe('Reload when the config file changes on disk. Off by default: a file is applied on SIGHUP or `sluice config reload` only, so a half-written save is never put in force.'),
      })
      .prefault({})
      .describe('How the config file itself is read.'),
    log: z
      .strictObject({
        level: z
          .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
          .default('info')
          .describe('Least severe level written. At `info`: connections, refusals, AUTH failures, messages received and every delivery attempt per recipient (see docs/logging.md).'),
        format: z.enum(['json', 'text']).default('json').describe('`json`: one JSON object per line. `text`: one readable line per event, like Postfix\'s maillog.'),
        destination: z.enum(['stdout', 'file', 'syslog']).default('stdout').describe('Where the log goes: standard output, a file rotated by size and day (`log.file`), or a syslog server (`log.syslog`). Changes with a restart.'),
        file: z
          .strictObject({
            path: z.string().optional().meta({ defaultText: '`<dataDir>/log/sluice.log`' }).describe('Log file; each file gets a number before its extension (`sluice.1.log`, `sluice.2.log`...), the highest is the current one.'),
            maxSize: size('100MB').prefault('100MB').describe('A file that reaches this size is closed and the next one opened.'),
            frequency: z.enum(['daily', 'hourly', 'never']).default('daily').describe('Also open a new file every day or hour (`never`: by size only).'),
            keep: z.number().int().min(1).default(10).describe('Older files kept besides the current one; older ones are deleted.'),
          })
          .prefault({})
          .describe('The log file (`destination: file`).'),
        syslog: z
          .strictObject({
            address: hostPort.default('127.0.0.1:514').describe('Syslog server, `host:port` (port 514 by default).'),
            protocol: z.enum(['udp', 'tcp']).default('udp').describe('Transport to the syslog server.'),
            facility: z.enum(['mail', 'daemon', 'user', 'local0', 'local1', 'local2', 'local3', 'local4', 'local5', 'local6', 'local7']).default('mail').describe('Syslog facility.'),
            appName: z.string().regex(/^[!-~]{1,48}$/, 'printable ASCII without spaces, at most 48 characters').default('sluice').describe('APP-NAME of each message.'),
            rfc: z.enum(['5424', '3164']).default('5424').describe('Message format: RFC 5424, or the older BSD format of RFC 3164.'),
          })
          .prefault({})
          .describe('The syslog server (`destination: syslog`).'),
        tracking: z
          .strictObject({
            dir: z.string().optional().meta({ defaultText: '`<dataDir>/tracking`' }).describe('Directory of the message tracking log: one JSON-lines file per day, `tracking-YYYY-MM-DD.jsonl`.'),
            retainDays: z.number().int().min(1).optional().meta({ defaultText: '`30`' }).describe('Daily files kept, today\'s included; older ones are deleted.'),
            maxAge: duration('30d').optional().describe('The former name of `retainDays`, as a duration (rounded up to whole days); used only when `retainDays` is not set.'),
          })
          .prefault({})
          .describe('Message tracking log (MG-5): received, routed, deferred (with the reason), delivered, failed, dsn, suspended, resumed, removed; searched with `sluice message track`.'),
      })
      .prefault({})
      .describe('Logging (see docs/logging.md).'),
  })
  .superRefine((config, ctx) => {
    if (config.storage.backend === 'postgres' && config.storage.postgres.url === undefined) {
      ctx.addIssue({ code: 'custom', path: ['storage', 'postgres', 'url'], message: 'required with storage.backend: postgres' });
    }
    config.routes.forEach((route, index) => {
      if (!(route.bounceProfile in config.bounceProfiles)) {
        ctx.addIssue({ code: 'custom', path: ['routes', index, 'bounceProfile'], message: `no bounce profile named "${route.bounceProfile}"` });
      }
    });
    checkRouteNames(config.routes, ctx);
    const management = config.management.listen;
    const sameAsManagement = config.listeners.findIndex((l) => l.listen.port !== 0 && l.listen.port === management.port && l.listen.host === management.host);
    if (sameAsManagement !== -1) {
      ctx.addIssue({ code: 'custom', path: ['management', 'listen'], message: `${management.text} is also the address of listeners[${sameAsManagement}]` });
    }
    const seen = new Map<string, number>();
    config.listeners.forEach((listener, index) => {
      for (const key of [`name:${listener.name}`, `listen:${listener.listen.host}:${listener.listen.port}`]) {
        if (seen.has(key) && !key.endsWith(':0')) {
          ctx.addIssue({ code: 'custom', path: ['listeners', index, key.split(':')[0]!], message: `duplicates listeners[${seen.get(key)}]` });
        }
        seen.set(key, index);
      }
    });
  });

export type Config = z.output<typeof configSchema>;

let jsonSchema: unknown;
/** The schema as JSON Schema (what a file may hold), made once: for the reference and for "did you mean". */
export const configJsonSchema = (): unknown => (jsonSchema ??= z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }));

/** Queues of the queue store's own, whose names no route may take. */
const RESERVED_QUEUE_NAMES = ['submission', 'unreachable', 'poison'];

/**
 * Route names name queues: a smart-host route's queue is the route's name, an MX route's queue is the recipient
 * domain. Two routes with one name, or a route named like a domain an MX route delivers, would share a queue
 * and send one's mail to the other's next hop.
 */
function checkRouteNames(routes: Array<z.output<typeof routeSchema>>, ctx: z.RefinementCtx): void {
  const first = new Map<string, number>();
  routes.forEach((route, index) => {
    const name = route.name.toLowerCase();
    const problem = (message: string) => ctx.addIssue({ code: 'custom', path: ['routes', index, 'name'], message });
    if (first.has(name)) problem(`"${route.name}" is already the name of routes[${first.get(name)}]: route names must be unique`);
    else first.set(name, index);
    if (RESERVED_QUEUE_NAMES.includes(name)) problem(`"${route.name}" is the name of a queue of Sluice's own (Submission, Unreachable, Poison)`);
    if (route.mx || !name.includes('.')) return;
    const mxRoute = routes.find((other) => other.mx && anyDomainMatches(other.match, name));
    if (mxRoute) problem(`"${route.name}" is also a domain that route "${mxRoute.name}" delivers by MX, whose queue would have the same name: use a name without a dot`);
  });
}

export type ListenerConfig = Config['listeners'][number];
export type RouteConfig = Config['routes'][number];
export type BounceProfile = z.output<typeof bounceProfileSchema>;

/** Where mail to <postmaster> goes, and the sender of delivery status notifications. */
export const postmasterAddress = (config: Pick<Config, 'dsn' | 'hostname'>): string => config.dsn.postmaster ?? `postmaster@${config.hostname}`;

// The one schema of sluice.yaml (SPEC §8): every key, its type, its default
// and its documentation. docs/configuration.md is generated from it
// (`npm run docs:config`) and a test keeps the two in step.
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { z } from 'zod';
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

export const configSchema = z
  .strictObject({
    node: z.string().regex(/^[A-Za-z0-9_.-]+$/).default(hostname().split('.')[0] || 'sluice').meta({ defaultText: 'the short host name' }).describe('Name of this node, used in queue identities and Reporting-MTA.'),
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
    storage: z
      .strictObject({
        backend: z.literal('sqlite').default('sqlite').describe('Queue store backend. `sqlite` (embedded, one node).'),
      })
      .prefault({})
      .describe('Queue store (ST-1).'),
    log: z
      .strictObject({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info').describe('Least severe level written (JSON lines on stdout).'),
      })
      .prefault({})
      .describe('Logging.'),
  })
  .superRefine((config, ctx) => {
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
export type ListenerConfig = Config['listeners'][number];

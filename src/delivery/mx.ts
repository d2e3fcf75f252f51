// Next-hop addresses for MX routes (RT-1, RT-4): MX records in priority order,
// A/AAAA of the domain when it has no MX, and RFC 7505 null MX as a permanent
// failure. NXDOMAIN is permanent; SERVFAIL and timeouts are temporary.
import { Resolver } from 'node:dns/promises';

export interface Target {
  /** Where to connect: an IP address or a host name. */
  host: string;
  port: number;
  /** The name the target is known by (MX host or smart host), for TLS and logs. */
  name: string;
}

export class DnsFailure extends Error {
  constructor(
    /** The reply recorded for the recipients, e.g. `550 5.1.2 ...`. */
    readonly reply: string,
    readonly permanent: boolean,
  ) {
    super(reply);
    this.name = 'DnsFailure';
  }
}

export interface MxResolver {
  targets(domain: string, port: number): Promise<Target[]>;
}

const NOT_FOUND = new Set(['ENOTFOUND']);
const NO_DATA = new Set(['ENODATA']);

function code(error: unknown): string {
  return (error as { code?: string }).code ?? 'EUNKNOWN';
}

export function createMxResolver(options: { servers?: string[]; timeout: number }): MxResolver {
  const resolver = new Resolver({ timeout: options.timeout, tries: 2 });
  if (options.servers) resolver.setServers(options.servers);

  /** Addresses of one host, IPv4 first; [] when it has none; throws on temporary errors. */
  async function addressesOf(host: string): Promise<string[]> {
    const lookups = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)]);
    const found = lookups.flatMap((l) => (l.status === 'fulfilled' ? l.value : []));
    const temporary = lookups.find((l) => l.status === 'rejected' && !NOT_FOUND.has(code(l.reason)) && !NO_DATA.has(code(l.reason)));
    if (found.length === 0 && temporary?.status === 'rejected') {
      throw new DnsFailure(`451 4.4.3 DNS lookup of ${host} failed (${code(temporary.reason)})`, false);
    }
    return found;
  }

  return {
    async targets(domain, port) {
      let records: { exchange: string; priority: number }[];
      try {
        records = await resolver.resolveMx(domain);
      } catch (error) {
        if (NOT_FOUND.has(code(error))) throw new DnsFailure(`550 5.1.2 Domain ${domain} does not exist (NXDOMAIN)`, true);
        if (!NO_DATA.has(code(error))) throw new DnsFailure(`451 4.4.3 MX lookup for ${domain} failed (${code(error)})`, false);
        records = [];
      }
      if (records.some((r) => r.exchange === '' || r.exchange === '.')) {
        throw new DnsFailure(`556 5.1.10 Domain ${domain} accepts no mail (null MX, RFC 7505)`, true);
      }
      if (records.length === 0) {
        // RFC 5321 §5.1: no MX, the domain itself is the implicit MX
        const addresses = await addressesOf(domain);
        if (addresses.length === 0) throw new DnsFailure(`550 5.1.2 Domain ${domain} has no MX and no address`, true);
        return addresses.map((host) => ({ host, port, name: domain }));
      }
      const targets: Target[] = [];
      let lastFailure: DnsFailure | undefined;
      for (const record of [...records].sort((a, b) => a.priority - b.priority)) {
        try {
          for (const host of await addressesOf(record.exchange)) targets.push({ host, port, name: record.exchange });
        } catch (error) {
          lastFailure = error as DnsFailure;
        }
      }
      if (targets.length === 0) throw lastFailure ?? new DnsFailure(`451 4.4.4 No address for any MX host of ${domain}`, false);
      return targets;
    },
  };
}

/** Smart hosts as written in the route (`host:port`, port 25 by default), in priority order. */
export function smartHostTargets(smartHosts: string[]): Target[] {
  return smartHosts.map((entry) => {
    const match = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(entry)!;
    const host = (match[1] ?? match[2])!;
    return { host, port: match[3] ? Number(match[3]) : 25, name: host };
  });
}

// Relay policy (IN-4): mail for an accepted domain is taken from anyone; mail
// for any other domain only from allowed networks or authenticated users.
import { BlockList, isIPv4 } from 'node:net';
import { anyDomainMatches } from '../config/domain-pattern.js';

export interface RelayPolicy {
  /** Undefined when the recipient may be accepted; else why not. */
  check(recipientDomain: string, clientIp: string, authenticated: boolean): 'relayDenied' | undefined;
}

export function createRelayPolicy(acceptedDomains: string[], allowFrom: string[]): RelayPolicy {
  const networks = new BlockList();
  for (const entry of allowFrom) {
    const [address, prefix] = entry.split('/') as [string, string | undefined];
    const family = isIPv4(address) ? 'ipv4' : 'ipv6';
    if (prefix === undefined) networks.addAddress(address, family);
    else networks.addSubnet(address, Number(prefix), family);
  }

  const isAllowedNetwork = (ip: string) => {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1];
    const address = mapped ?? ip;
    return networks.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  };

  return {
    check(recipientDomain, clientIp, authenticated) {
      if (authenticated || anyDomainMatches(acceptedDomains, recipientDomain) || isAllowedNetwork(clientIp)) return undefined;
      return 'relayDenied';
    },
  };
}

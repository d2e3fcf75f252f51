// The routing table (RT-1, RT-2): maps a recipient domain to the queue of its
// next hop, first matching route wins. No route, or a disabled one, sends the
// recipient to Unreachable with the reason, as does a domain without a dot on
// an MX route; a message too big for its route fails for that recipient.
import { anyDomainMatches, domainOf } from '../config/domain-pattern.js';
import type { RouteConfig } from '../config/schema.js';
import type { DeliveryType } from '../store/types.js';

export type RouteDecision =
  | { kind: 'queue'; queue: string; deliveryType: DeliveryType; route: string }
  | { kind: 'unreachable'; reason: string }
  | { kind: 'fail'; reply: string };

export interface RoutingTable {
  decide(recipient: string, messageSize: number): RouteDecision;
}

export function createRoutingTable(routes: RouteConfig[]): RoutingTable {
  return {
    decide(recipient, messageSize) {
      const domain = domainOf(recipient);
      const route = routes.find((r) => anyDomainMatches(r.match, domain));
      if (!route) return { kind: 'unreachable', reason: `no route matches ${domain}` };
      if (!route.enabled) return { kind: 'unreachable', reason: `route ${route.name} is disabled` };
      if (route.maxMessageSize !== undefined && messageSize > route.maxMessageSize) {
        return { kind: 'fail', reply: `552 5.3.4 Message size ${messageSize} exceeds the limit ${route.maxMessageSize} of route ${route.name}` };
      }
      // a name without a dot is no domain of the DNS; it could also be the name of a smart-host route's queue
      if (route.mx && !domain.includes('.')) return { kind: 'unreachable', reason: `${domain} has no dot: route ${route.name} delivers by MX only to domains` };
      return route.mx
        ? { kind: 'queue', queue: domain, deliveryType: 'DnsConnectorDelivery', route: route.name }
        : { kind: 'queue', queue: route.name, deliveryType: 'SmartHostConnectorDelivery', route: route.name };
    },
  };
}


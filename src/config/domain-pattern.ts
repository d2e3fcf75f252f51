// Domain patterns as written in the config: `example.com` (exact), `*.example.org`
// (any subdomain), `*` (everything). Patterns are lower-cased by the schema.

export function domainMatches(pattern: string, domain: string): boolean {
  return pattern === '*' || pattern === domain || (pattern.startsWith('*.') && domain.endsWith(pattern.slice(1)));
}

export function anyDomainMatches(patterns: string[], domain: string): boolean {
  const lower = domain.toLowerCase();
  return patterns.some((pattern) => domainMatches(pattern, lower));
}

/** The domain of an address, lower-cased. */
export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

// The filter language of queue and message lists (MG-1), as Exchange writes it:
//   {Status -eq "Retry" -and MessageCount -gt 1000}
// A hand-written recursive-descent parser (braces optional; -eq -ne -gt -ge
// -lt -le -like; -and), with errors that point at the column, and a resolver
// to typed conditions over a fixed map of properties, which the store renders
// as parameterised SQL: values never become SQL text.
import { parseDuration, parseSize } from '../config/units.js';
import type { Condition, FilterOperator as Operator } from '../store/types.js';

export type PropertyType = 'text' | 'number' | 'size' | 'date';

export interface Comparison {
  property: string;
  operator: Operator;
  value: string | number;
  /** Column of the value in the expression (1-based), for errors found later. */
  column: number;
}

export class FilterError extends Error {
  constructor(
    readonly column: number,
    readonly reason: string,
    found: string,
  ) {
    super(`${found} at column ${column}: ${reason}`);
    this.name = 'FilterError';
  }
}

const OPERATORS = new Set<string>(['-eq', '-ne', '-gt', '-ge', '-lt', '-le', '-like']);

type Token = { kind: 'word' | 'string' | 'operator' | 'and' | 'open' | 'close' | 'end'; text: string; column: number };

function tokenize(input: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < input.length) {
    const c = input[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const column = i + 1;
    if (c === '{' || c === '}') {
      tokens.push({ kind: c === '{' ? 'open' : 'close', text: c, column });
      i++;
    } else if (c === '"' || c === "'") {
      const end = input.indexOf(c, i + 1);
      if (end === -1) throw new FilterError(input.length + 1, 'unterminated string', 'unexpected end of input');
      tokens.push({ kind: 'string', text: input.slice(i + 1, end), column });
      i = end + 1;
    } else {
      const match = /^[^\s{}"']+/.exec(input.slice(i))!;
      const word = match[0];
      const lower = word.toLowerCase();
      // -letters is an operator (known or not, so the error can name it); -2h and -5 are values
      const kind = lower === '-and' ? 'and' : /^-[a-z]+$/.test(lower) ? 'operator' : 'word';
      tokens.push({ kind, text: kind === 'word' ? word : lower, column });
      i += word.length;
    }
  }
  tokens.push({ kind: 'end', text: '', column: input.length + 1 });
  return tokens;
}

/** Parses an expression into the comparisons it joins with -and. */
export function parseFilter(input: string): Comparison[] {
  const tokens = tokenize(input);
  let at = 0;
  const peek = () => tokens[at]!;
  const describe = (t: Token) => (t.kind === 'end' ? 'unexpected end of input' : `unexpected "${t.text}"`);
  const expect = (kind: Token['kind'], what: string): Token => {
    const token = peek();
    if (token.kind !== kind) throw new FilterError(token.column, `expected ${what}`, describe(token));
    at++;
    return token;
  };

  const braced = peek().kind === 'open';
  if (braced) at++;
  const comparisons: Comparison[] = [];
  for (;;) {
    const property = expect('word', 'a property name');
    const operator = expect('operator', 'an operator (-eq -ne -gt -ge -lt -le -like)');
    if (!OPERATORS.has(operator.text)) throw new FilterError(operator.column, 'unknown operator', `unexpected "${operator.text}"`);
    const value = peek();
    if (value.kind !== 'string' && value.kind !== 'word') throw new FilterError(value.column, 'expected a value', describe(value));
    at++;
    comparisons.push({
      property: property.text,
      operator: operator.text as Operator,
      value: value.kind === 'word' && /^-?\d+(\.\d+)?$/.test(value.text) ? Number(value.text) : value.text,
      column: value.column,
    });
    if (peek().kind !== 'and') break;
    at++;
  }
  if (braced) expect('close', '"}"');
  expect('end', 'the end of the expression');
  return comparisons;
}

export interface PropertyMap {
  [lowerName: string]: { column: string; type: PropertyType };
}

function valueFor(type: PropertyType, comparison: Comparison, now: number): string | number {
  const { value, column } = comparison;
  const fail = (reason: string) => new FilterError(column, reason, `bad value "${value}"`);
  switch (type) {
    case 'text':
      return String(value);
    case 'number':
      if (typeof value !== 'number') throw fail('expected a number');
      return value;
    case 'size': {
      const size = parseSize(value);
      if (!size.ok) throw fail('expected a size such as 10MB');
      return size.value;
    }
    case 'date': {
      // "-2h" is two hours ago; otherwise an ISO date or date-time
      const relative = typeof value === 'string' && value.startsWith('-') ? parseDuration(value.slice(1)) : undefined;
      if (relative?.ok) return now - relative.value;
      const parsed = Date.parse(String(value));
      if (Number.isNaN(parsed)) throw fail('expected a date (2026-11-24T10:00:00Z) or a time ago (-2h)');
      return parsed;
    }
  }
}

function propertyOf(properties: PropertyMap, comparison: Comparison): PropertyMap[string] {
  const property = properties[comparison.property.toLowerCase()];
  if (!property) {
    throw new FilterError(comparison.column, `unknown property "${comparison.property}" (known: ${Object.keys(properties).join(', ')})`, 'bad property');
  }
  if (comparison.operator === '-like' && property.type !== 'text') {
    throw new FilterError(comparison.column, '-like compares text only', `bad value "${comparison.value}"`);
  }
  return property;
}

/** Resolves parsed comparisons against the properties a list offers. */
export function resolveFilter(comparisons: Comparison[], properties: PropertyMap, now: number): Condition[] {
  return comparisons.map((comparison) => {
    const property = propertyOf(properties, comparison);
    return { column: property.column, operator: comparison.operator, value: valueFor(property.type, comparison, now), text: property.type === 'text' };
  });
}

/** `*` is the only wildcard; everything else is literal; case-insensitive (-like, and address searches). */
export function wildcardPattern(text: string): RegExp {
  return new RegExp(`^${text.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 'i');
}

/** Evaluates resolved conditions against one record in memory (for short lists such as queues). */
export function matchesFilter(conditions: Condition[], record: Record<string, unknown>): boolean {
  return conditions.every(({ column, operator, value: wanted, text }) => {
    const raw = record[column];
    if (operator === '-like') {
      return wildcardPattern(String(wanted)).test(String(raw ?? ''));
    }
    if (raw === null || raw === undefined) return false;
    const actual = text ? String(raw).toLowerCase() : typeof raw === 'string' ? Date.parse(raw) : Number(raw);
    const expected = text ? String(wanted).toLowerCase() : wanted;
    switch (operator) {
      case '-eq': return actual === expected;
      case '-ne': return actual !== expected;
      case '-gt': return actual > expected;
      case '-ge': return actual >= expected;
      case '-lt': return actual < expected;
      case '-le': return actual <= expected;
    }
  });
}

// The filter language of queue and message lists (MG-1), as Exchange writes it:
//   {Status -eq "Retry" -and (MessageCount -gt 1000 -or -not (LastError -notlike "*timed out*"))}
// A hand-written recursive-descent parser (braces optional; -eq -ne -gt -ge
// -lt -le -like -notlike; -and, -or, -not and parentheses, -not binding
// tightest and -and before -or), with errors that point at the column, and a
// resolver to typed conditions over a fixed map of properties, which the store
// renders as parameterised SQL: values never become SQL text.
import { parseDuration, parseSize } from '../config/units.js';
import type { ColumnCondition, Condition, FilterOperator as Operator } from '../store/types.js';

export type PropertyType = 'text' | 'number' | 'size' | 'date';

export interface Comparison {
  property: string;
  operator: Operator;
  value: string | number;
  /** Column of the value in the expression (1-based), for errors found later. */
  column: number;
}

/** A parsed expression: comparisons joined by -and / -or, negated by -not. */
export type FilterExpression =
  | ({ kind: 'compare' } & Comparison)
  | { kind: 'and' | 'or'; of: FilterExpression[] }
  | { kind: 'not'; of: FilterExpression };

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

const OPERATORS = new Set<string>(['-eq', '-ne', '-gt', '-ge', '-lt', '-le', '-like', '-notlike']);
const OPERATOR_LIST = '-eq -ne -gt -ge -lt -le -like -notlike';
const KEYWORDS: Record<string, Token['kind']> = { '-and': 'and', '-or': 'or', '-not': 'not' };

type Token = { kind: 'word' | 'string' | 'operator' | 'and' | 'or' | 'not' | 'open' | 'close' | 'lparen' | 'rparen' | 'end'; text: string; column: number };

const PUNCTUATION: Record<string, Token['kind']> = { '{': 'open', '}': 'close', '(': 'lparen', ')': 'rparen' };

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
    if (PUNCTUATION[c]) {
      tokens.push({ kind: PUNCTUATION[c], text: c, column });
      i++;
    } else if (c === '"' || c === "'") {
      const end = input.indexOf(c, i + 1);
      if (end === -1) throw new FilterError(input.length + 1, 'unterminated string', 'unexpected end of input');
      tokens.push({ kind: 'string', text: input.slice(i + 1, end), column });
      i = end + 1;
    } else {
      const match = /^[^\s{}()"']+/.exec(input.slice(i))!;
      const word = match[0];
      const lower = word.toLowerCase();
      // -letters is a keyword or an operator (known or not, so the error can name it); -2h and -5 are values
      const kind = KEYWORDS[lower] ?? (/^-[a-z]+$/.test(lower) ? 'operator' : 'word');
      tokens.push({ kind, text: kind === 'word' ? word : lower, column });
      i += word.length;
    }
  }
  tokens.push({ kind: 'end', text: '', column: input.length + 1 });
  return tokens;
}

/**
 * Parses an expression. Grammar (keywords in any case):
 *   expression := or ; or := and ("-or" and)* ; and := unary ("-and" unary)*
 *   unary := "-not" unary | "(" or ")" | property operator value
 */
export function parseFilter(input: string): FilterExpression {
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
  // bounded: a filter comes from an operator, but a deep one must not exhaust the stack
  let depth = 0;
  const nested = <T>(parse: () => T): T => {
    if (++depth > 64) throw new FilterError(peek().column, 'nested too deeply', describe(peek()));
    try {
      return parse();
    } finally {
      depth--;
    }
  };

  const comparison = (): FilterExpression => {
    const property = expect('word', 'a property name, "(" or -not');
    const operator = expect('operator', `an operator (${OPERATOR_LIST})`);
    if (!OPERATORS.has(operator.text)) throw new FilterError(operator.column, 'unknown operator', `unexpected "${operator.text}"`);
    const value = peek();
    if (value.kind !== 'string' && value.kind !== 'word') throw new FilterError(value.column, 'expected a value', describe(value));
    at++;
    return {
      kind: 'compare',
      property: property.text,
      operator: operator.text as Operator,
      value: value.kind === 'word' && /^-?\d+(\.\d+)?$/.test(value.text) ? Number(value.text) : value.text,
      column: value.column,
    };
  };
  const unary = (): FilterExpression =>
    nested(() => {
      if (peek().kind === 'not') {
        at++;
        return { kind: 'not', of: unary() };
      }
      if (peek().kind === 'lparen') {
        at++;
        const inner = or();
        expect('rparen', '")"');
        return inner;
      }
      return comparison();
    });
  const joined = (kind: 'and' | 'or', operand: () => FilterExpression) => (): FilterExpression => {
    const of = [operand()];
    while (peek().kind === kind) {
      at++;
      of.push(operand());
    }
    return of.length === 1 ? of[0]! : { kind, of };
  };
  const and = joined('and', unary);
  const or = joined('or', and);

  const braced = peek().kind === 'open';
  if (braced) at++;
  const expression = or();
  if (braced) expect('close', '"}"');
  expect('end', 'the end of the expression');
  return expression;
}

/** The expression with each comparison replaced (e.g. to rewrite a value the way the store keeps it). */
export function mapComparisons(expression: FilterExpression, map: (comparison: Comparison) => Comparison): FilterExpression {
  switch (expression.kind) {
    case 'compare':
      return { ...map(expression), kind: 'compare' };
    case 'not':
      return { kind: 'not', of: mapComparisons(expression.of, map) };
    default:
      return { kind: expression.kind, of: expression.of.map((e) => mapComparisons(e, map)) };
  }
}

export interface PropertyMap {
  [lowerName: string]: {
    column: string;
    type: PropertyType;
    /** The values the property can have (a status): a value that names none of them is an error. */
    values?: readonly string[];
    /** A set of values (the recipients): a comparison is true when any of them matches (-eq and -like only). */
    many?: boolean;
  };
}

/** How a property is named in errors: its name as the map writes it in lower case, e.g. "status". */
const nameOf = (comparison: Comparison) => comparison.property.toLowerCase();

function valueFor(property: PropertyMap[string], comparison: Comparison, now: number): string | number {
  const { value, column } = comparison;
  const fail = (reason: string) => new FilterError(column, reason, `bad value "${value}"`);
  switch (property.type) {
    case 'text': {
      const text = String(value);
      if (property.values) {
        const like = comparison.operator === '-like' || comparison.operator === '-notlike';
        const known = like ? property.values.some((v) => wildcardPattern(text).test(v)) : property.values.some((v) => v.toLowerCase() === text.toLowerCase());
        if (!known) throw fail(`${like ? `no ${nameOf(comparison)} matches` : `unknown ${nameOf(comparison)}`} (known: ${property.values.join(', ')})`);
      }
      return text;
    }
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
  const bad = (reason: string) => new FilterError(comparison.column, reason, `bad value "${comparison.value}"`);
  if ((comparison.operator === '-like' || comparison.operator === '-notlike') && property.type !== 'text') throw bad(`${comparison.operator} compares text only`);
  if (property.many && comparison.operator !== '-eq' && comparison.operator !== '-like') {
    throw bad(`${comparison.property} takes -eq and -like (true when any matches); for none, write -not (${comparison.property} ${comparison.operator === '-notlike' ? '-like' : '-eq'} ...)`);
  }
  return property;
}

function resolve(expression: FilterExpression, properties: PropertyMap, now: number): Condition {
  switch (expression.kind) {
    case 'compare': {
      const property = propertyOf(properties, expression);
      return { column: property.column, operator: expression.operator, value: valueFor(property, expression, now), text: property.type === 'text' };
    }
    case 'not':
      return { op: 'not', of: resolve(expression.of, properties, now) };
    default:
      return { op: expression.kind, of: expression.of.map((e) => resolve(e, properties, now)) };
  }
}

/** Resolves a parsed expression against the properties a list offers: conditions that must all hold. */
export function resolveFilter(expression: FilterExpression, properties: PropertyMap, now: number): Condition[] {
  const condition = resolve(expression, properties, now);
  return 'op' in condition && condition.op === 'and' ? condition.of : [condition];
}

/** `*` is the only wildcard; everything else is literal; case-insensitive (-like, and address searches). */
export function wildcardPattern(text: string): RegExp {
  return new RegExp(`^${text.split('*').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`, 'i');
}

function compare({ column, operator, value: wanted, text }: ColumnCondition, record: Record<string, unknown>): boolean {
  const raw = record[column];
  // a missing value matches no comparison (and so every -not of one), as in the store's SQL
  if (raw === null || raw === undefined) return operator === '-notlike';
  if (Array.isArray(raw)) return raw.some((one) => compare({ column, operator, value: wanted, text }, { [column]: one }));
  if (operator === '-like') return wildcardPattern(String(wanted)).test(String(raw));
  if (operator === '-notlike') return !wildcardPattern(String(wanted)).test(String(raw));
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
}

function matches(condition: Condition, record: Record<string, unknown>): boolean {
  if (!('op' in condition)) return compare(condition, record);
  switch (condition.op) {
    case 'and': return condition.of.every((c) => matches(c, record));
    case 'or': return condition.of.some((c) => matches(c, record));
    case 'not': return !matches(condition.of, record);
  }
}

/** Evaluates resolved conditions against one record in memory (for short lists such as queues); an array value matches when any element does. */
export function matchesFilter(conditions: Condition[], record: Record<string, unknown>): boolean {
  return conditions.every((c) => matches(c, record));
}

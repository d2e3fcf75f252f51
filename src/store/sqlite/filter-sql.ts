// Renders resolved filter conditions (MG-1) as a parameterised SQLite WHERE
// clause. Columns come from the caller's fixed property map, never from the
// user; every value is a bound parameter. A comparison with a NULL column is
// false and its negation true (two-valued logic): a negation wraps its operand
// in coalesce(..., 0). The `recipients` column is a set: true when any
// recipient of the message_list entry matches.
import type { ColumnCondition, Condition, FilterOperator } from '../types.js';

export interface SqlFilter {
  /** `a = ? AND b > ?`, or `1 = 1` for no conditions. */
  where: string;
  params: Array<string | number>;
}

const SQL_OPERATOR: Record<Exclude<FilterOperator, '-like' | '-notlike'>, string> = { '-eq': '=', '-ne': '<>', '-gt': '>', '-ge': '>=', '-lt': '<', '-le': '<=' };

/** * is the only wildcard; % and _ are literal, as an operator would expect. */
const likePattern = (value: string | number) => String(value).replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%');

// the recipients of a message_list entry: all of them in Submission (no item), else those its item carries
const RECIPIENT_OF_ENTRY = 'r.message_seq = message_list.seq AND (message_list.item_id IS NULL OR r.item_id = message_list.item_id)';

function comparison({ column, operator, value, text }: ColumnCondition, params: Array<string | number>): string {
  if (!/^[a-z_]+$/.test(column)) throw new Error(`not a column: ${column}`);
  if (column === 'recipients') {
    if (operator !== '-eq' && operator !== '-like') throw new Error(`recipients takes -eq and -like, not ${operator}`);
    params.push(operator === '-like' ? likePattern(value) : value);
    const test = operator === '-like' ? "r.address LIKE ? ESCAPE '\\'" : 'r.address = ? COLLATE NOCASE';
    return `EXISTS (SELECT 1 FROM recipients r WHERE ${RECIPIENT_OF_ENTRY} AND ${test})`;
  }
  if (operator === '-like' || operator === '-notlike') {
    params.push(likePattern(value));
    return operator === '-like' ? `${column} LIKE ? ESCAPE '\\'` : `NOT coalesce(${column} LIKE ? ESCAPE '\\', 0)`;
  }
  params.push(value);
  return text ? `${column} ${SQL_OPERATOR[operator]} ? COLLATE NOCASE` : `${column} ${SQL_OPERATOR[operator]} ?`;
}

function render(condition: Condition, params: Array<string | number>): string {
  if (!('op' in condition)) return comparison(condition, params);
  switch (condition.op) {
    case 'not':
      return `NOT coalesce((${render(condition.of, params)}), 0)`;
    case 'and':
    case 'or':
      return condition.of.length === 0 ? (condition.op === 'and' ? '1 = 1' : '1 = 0') : `(${condition.of.map((c) => render(c, params)).join(` ${condition.op.toUpperCase()} `)})`;
  }
}

export function filterSql(conditions: Condition[]): SqlFilter {
  const params: Array<string | number> = [];
  const clauses = conditions.map((condition) => render(condition, params));
  return { where: clauses.length > 0 ? clauses.join(' AND ') : '1 = 1', params };
}

// Filter conditions (MG-1) as a PostgreSQL WHERE clause with numbered
// parameters. Columns come from the caller's fixed property map (and are
// checked to be plain names); every value is a parameter, never SQL text.
// Text compares case-insensitively, as the filter language says; in -like,
// `*` is the only wildcard and `%`, `_` and `\` match themselves.
import type { ColumnCondition, Condition, FilterOperator } from '../types.js';

const COMPARE: Record<Exclude<FilterOperator, '-like' | '-notlike'>, string> = { '-eq': '=', '-ne': '<>', '-gt': '>', '-ge': '>=', '-lt': '<', '-le': '<=' };

export const likePattern = (value: string): string => value.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%');

// the recipients of a message_list entry: all of them in Submission (no item), else those its item carries
const RECIPIENT_OF_ENTRY = 'r.message_seq = message_list.seq AND (message_list.item_id IS NULL OR r.item_id = message_list.item_id)';

/**
 * `firstParam`: the number of the first parameter the clause may use ($1 unless the statement has others before).
 * -and, -or and -not nest; a comparison with a NULL column is false and its negation true (coalesce under NOT);
 * the `recipients` column is true when any recipient of the message_list entry matches.
 */
export function pgFilter(conditions: Condition[], firstParam = 1): { where: string; params: Array<string | number> } {
  const params: Array<string | number> = [];
  const next = (value: string | number) => {
    params.push(value);
    return `$${firstParam + params.length - 1}`;
  };
  const comparison = ({ column, operator, value, text }: ColumnCondition): string => {
    if (!/^[a-z_]+$/.test(column)) throw new Error(`not a column: ${column}`);
    if (column === 'recipients') {
      if (operator !== '-eq' && operator !== '-like') throw new Error(`recipients takes -eq and -like, not ${operator}`);
      const test = operator === '-like' ? `r.address ILIKE ${next(likePattern(String(value)))} ESCAPE '\\'` : `lower(r.address) = lower(${next(value)}::text)`;
      return `EXISTS (SELECT 1 FROM recipients r WHERE ${RECIPIENT_OF_ENTRY} AND ${test})`;
    }
    if (operator === '-like') return `${column} ILIKE ${next(likePattern(String(value)))} ESCAPE '\\'`;
    if (operator === '-notlike') return `NOT coalesce(${column} ILIKE ${next(likePattern(String(value)))} ESCAPE '\\', false)`;
    return text ? `lower(${column}) ${COMPARE[operator]} lower(${next(value)}::text)` : `${column} ${COMPARE[operator]} ${next(value)}::numeric`;
  };
  const render = (condition: Condition): string => {
    if (!('op' in condition)) return comparison(condition);
    if (condition.op === 'not') return `NOT coalesce((${render(condition.of)}), false)`;
    if (condition.of.length === 0) return condition.op === 'and' ? 'true' : 'false';
    return `(${condition.of.map(render).join(` ${condition.op.toUpperCase()} `)})`;
  };
  const clauses = conditions.map(render);
  return { where: clauses.length > 0 ? clauses.join(' AND ') : 'true', params };
}

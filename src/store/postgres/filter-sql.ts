// Filter conditions (MG-1) as a PostgreSQL WHERE clause with numbered
// parameters. Columns come from the caller's fixed property map (and are
// checked to be plain names); every value is a parameter, never SQL text.
// Text compares case-insensitively, as the filter language says; in -like,
// `*` is the only wildcard and `%`, `_` and `\` match themselves.
import type { Condition, FilterOperator } from '../types.js';

const COMPARE: Record<Exclude<FilterOperator, '-like'>, string> = { '-eq': '=', '-ne': '<>', '-gt': '>', '-ge': '>=', '-lt': '<', '-le': '<=' };

export const likePattern = (value: string): string => value.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%');

/** `firstParam`: the number of the first parameter the clause may use ($1 unless the statement has others before). */
export function pgFilter(conditions: Condition[], firstParam = 1): { where: string; params: Array<string | number> } {
  const params: Array<string | number> = [];
  const clauses = conditions.map(({ column, operator, value, text }) => {
    if (!/^[a-z_]+$/.test(column)) throw new Error(`not a column: ${column}`);
    const param = `$${firstParam + params.length}`;
    if (operator === '-like') {
      params.push(likePattern(String(value)));
      return `${column} ILIKE ${param} ESCAPE '\\'`;
    }
    params.push(value);
    return text ? `lower(${column}) ${COMPARE[operator]} lower(${param}::text)` : `${column} ${COMPARE[operator]} ${param}::numeric`;
  });
  return { where: clauses.length > 0 ? clauses.join(' AND ') : 'true', params };
}

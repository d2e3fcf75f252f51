// Renders resolved filter conditions (MG-1) as a parameterised SQLite WHERE
// clause. Columns come from the caller's fixed property map, never from the
// user; every value is a bound parameter.
import type { Condition, FilterOperator } from '../types.js';

export interface SqlFilter {
  /** `a = ? AND b > ?`, or `1 = 1` for no conditions. */
  where: string;
  params: Array<string | number>;
}

const SQL_OPERATOR: Record<Exclude<FilterOperator, '-like'>, string> = { '-eq': '=', '-ne': '<>', '-gt': '>', '-ge': '>=', '-lt': '<', '-le': '<=' };

export function filterSql(conditions: Condition[]): SqlFilter {
  const clauses: string[] = [];
  const params: Array<string | number> = [];
  for (const { column, operator, value, text } of conditions) {
    if (operator === '-like') {
      // * is the only wildcard; % and _ are literal, as an operator would expect
      clauses.push(`${column} LIKE ? ESCAPE '\\'`);
      params.push(String(value).replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, '%'));
      continue;
    }
    clauses.push(text ? `${column} ${SQL_OPERATOR[operator]} ? COLLATE NOCASE` : `${column} ${SQL_OPERATOR[operator]} ?`);
    params.push(value);
  }
  return { where: clauses.length > 0 ? clauses.join(' AND ') : '1 = 1', params };
}

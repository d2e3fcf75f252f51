// The filter language (MG-1): every operator and value type, braces, case,
// errors that point at the column, and no way for a value to become SQL.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Sqlite from 'better-sqlite3';
import { FilterError, parseFilter, resolveFilter, type PropertyMap } from '../../src/management/filter.js';
import { filterSql } from '../../src/store/sqlite/filter-sql.js';

const NOW = Date.UTC(2026, 10, 24, 12);
const PROPERTIES: PropertyMap = {
  status: { column: 'status', type: 'text' },
  messagecount: { column: 'message_count', type: 'number' },
  size: { column: 'size', type: 'size' },
  datereceived: { column: 'received_at', type: 'date' },
  fromaddress: { column: 'mail_from', type: 'text' },
};

/** A real SQLite table to run compiled filters against. */
function table() {
  const db = new Sqlite(':memory:');
  db.exec('CREATE TABLE q (id INTEGER PRIMARY KEY, status TEXT, message_count INTEGER, size INTEGER, received_at INTEGER, mail_from TEXT)');
  const insert = db.prepare('INSERT INTO q (id, status, message_count, size, received_at, mail_from) VALUES (?, ?, ?, ?, ?, ?)');
  insert.run(1, 'Retry', 5000, 20 * 1024 * 1024, NOW - 3 * 3_600_000, 'alice@example.com');
  insert.run(2, 'Ready', 10, 1024, NOW - 60_000, 'bob@example.org');
  insert.run(3, 'Retry', 200, 5 * 1024 * 1024, NOW - 26 * 3_600_000, 'carol_x@example.com');
  insert.run(4, 'Suspended', 1001, 100, NOW, "o'brien@example.net");
  return db;
}

function ids(expression: string): number[] {
  const db = table();
  try {
    const { where, params } = filterSql(resolveFilter(parseFilter(expression), PROPERTIES, NOW));
    return (db.prepare(`SELECT id FROM q WHERE ${where} ORDER BY id`).all(...params) as Array<{ id: number }>).map((r) => r.id);
  } finally {
    db.close();
  }
}

function errorOf(expression: string): string {
  try {
    filterSql(resolveFilter(parseFilter(expression), PROPERTIES, NOW));
  } catch (error) {
    assert.ok(error instanceof FilterError);
    return error.message;
  }
  assert.fail('expected a FilterError');
}

describe('filter language (MG-1)', () => {
  it('parses the Exchange form with and without braces, property names in any case', () => {
    assert.deepEqual(ids('{Status -eq "Retry" -and MessageCount -gt 1000}'), [1]);
    assert.deepEqual(ids('status -EQ retry -AND messagecount -gt 1000'), [1]);
    assert.deepEqual(ids("{ STATUS -ne 'Retry' }"), [2, 4]);
  });

  it('supports every operator on numbers', () => {
    assert.deepEqual(ids('MessageCount -eq 200'), [3]);
    assert.deepEqual(ids('MessageCount -ne 200'), [1, 2, 4]);
    assert.deepEqual(ids('MessageCount -gt 1001'), [1]);
    assert.deepEqual(ids('MessageCount -ge 1001'), [1, 4]);
    assert.deepEqual(ids('MessageCount -lt 200'), [2]);
    assert.deepEqual(ids('MessageCount -le 200'), [2, 3]);
  });

  it('compares text case-insensitively and -like with * wildcards, other characters literal', () => {
    assert.deepEqual(ids('Status -eq "retry"'), [1, 3]);
    assert.deepEqual(ids('FromAddress -like "*@EXAMPLE.COM"'), [1, 3]);
    assert.deepEqual(ids('FromAddress -like "carol_*"'), [3]);
    assert.deepEqual(ids('FromAddress -like "caro%"'), [], '% is not a wildcard');
    assert.deepEqual(ids('FromAddress -like "b*"'), [2]);
  });

  it('takes sizes, dates and relative times as values', () => {
    assert.deepEqual(ids('Size -gt 10MB'), [1]);
    assert.deepEqual(ids('Size -ge 1KB -and Size -lt 10MB'), [2, 3]);
    assert.deepEqual(ids('DateReceived -lt "2026-11-23T12:00:00Z"'), [3]);
    assert.deepEqual(ids('DateReceived -lt -2h'), [1, 3]);
    assert.deepEqual(ids('DateReceived -ge -1h'), [2, 4]);
  });

  it('never lets a value become SQL (injection)', () => {
    assert.deepEqual(ids(`FromAddress -eq "x' OR '1'='1"`), []);
    assert.deepEqual(ids('FromAddress -eq "o\'brien@example.net"'), [4]);
    assert.deepEqual(ids(`Status -eq "Retry'; DROP TABLE q; --"`), []);
    const { where, params } = filterSql(resolveFilter(parseFilter(`Status -eq "'; DROP TABLE q; --"`), PROPERTIES, NOW));
    assert.doesNotMatch(where, /DROP/);
    assert.deepEqual(params, ["'; DROP TABLE q; --"]);
  });

  it('points at the problem', () => {
    assert.equal(errorOf('{Status -eq "Retry" -and Subject -eq "unterminated}'), 'unexpected end of input at column 52: unterminated string');
    assert.equal(errorOf('Status -equals "Retry"'), 'unexpected "-equals" at column 8: unknown operator');
    assert.equal(errorOf('Status "Retry"'), 'unexpected "Retry" at column 8: expected an operator (-eq -ne -gt -ge -lt -le -like)');
    assert.equal(errorOf('{Status -eq "Retry"'), 'unexpected end of input at column 20: expected "}"');
    assert.equal(errorOf('Status -eq'), 'unexpected end of input at column 11: expected a value');
    assert.equal(errorOf('Status -eq Retry -or Status -eq Ready'), 'unexpected "-or" at column 18: expected the end of the expression');
    assert.match(errorOf('Colour -eq "red"'), /^bad property at column 12: unknown property "Colour"/);
    assert.equal(errorOf('MessageCount -gt many'), 'bad value "many" at column 18: expected a number');
    assert.equal(errorOf('Size -gt 12parsecs'), 'bad value "12parsecs" at column 10: expected a size such as 10MB');
    assert.equal(errorOf('DateReceived -lt "soon"'), 'bad value "soon" at column 18: expected a date (2026-11-24T10:00:00Z) or a time ago (-2h)');
    assert.equal(errorOf('MessageCount -like 5'), 'bad value "5" at column 20: -like compares text only');
  });
});

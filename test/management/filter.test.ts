// The filter language (MG-1): every operator and value type, braces, case,
// -or, -not, parentheses and -notlike (issue 14), known status values,
// errors that point at the column, and no way for a value to become SQL.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Sqlite from 'better-sqlite3';
import { FilterError, matchesFilter, parseFilter, resolveFilter, type PropertyMap } from '../../src/management/filter.js';
import { filterSql } from '../../src/store/sqlite/filter-sql.js';

const NOW = Date.UTC(2026, 10, 24, 12);
const PROPERTIES: PropertyMap = {
  status: { column: 'status', type: 'text', values: ['Active', 'Ready', 'Retry', 'Suspended'] },
  lasterror: { column: 'last_error', type: 'text' },
  messagecount: { column: 'message_count', type: 'number' },
  size: { column: 'size', type: 'size' },
  datereceived: { column: 'received_at', type: 'date' },
  fromaddress: { column: 'mail_from', type: 'text' },
};

/** A real SQLite table to run compiled filters against. */
function table() {
  const db = new Sqlite(':memory:');
  db.exec('CREATE TABLE q (id INTEGER PRIMARY KEY, status TEXT, message_count INTEGER, size INTEGER, received_at INTEGER, mail_from TEXT, last_error TEXT)');
  const insert = db.prepare('INSERT INTO q (id, status, message_count, size, received_at, mail_from, last_error) VALUES (?, ?, ?, ?, ?, ?, ?)');
  insert.run(1, 'Retry', 5000, 20 * 1024 * 1024, NOW - 3 * 3_600_000, 'alice@example.com', '421 timed out');
  insert.run(2, 'Ready', 10, 1024, NOW - 60_000, 'bob@example.org', null);
  insert.run(3, 'Retry', 200, 5 * 1024 * 1024, NOW - 26 * 3_600_000, 'carol_x@example.com', '451 try later');
  insert.run(4, 'Suspended', 1001, 100, NOW, "o'brien@example.net", null);
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

  it('never lets a value become SQL (injection), in any branch of -or / -not', () => {
    assert.deepEqual(ids(`Status -eq Ready -or -not (FromAddress -notlike "x' OR 1=1 --")`), [2]);
    const tree = filterSql(resolveFilter(parseFilter(`-not (FromAddress -eq "'); DROP TABLE q; --" -or LastError -notlike "*'*")`), PROPERTIES, NOW));
    assert.doesNotMatch(tree.where, /DROP|'\)/);
    assert.deepEqual(tree.params, ["'); DROP TABLE q; --", "%'%"]);
    assert.deepEqual(ids(`FromAddress -eq "x' OR '1'='1"`), []);
    assert.deepEqual(ids('FromAddress -eq "o\'brien@example.net"'), [4]);
    assert.deepEqual(ids(`FromAddress -eq "Retry'; DROP TABLE q; --"`), []);
    const { where, params } = filterSql(resolveFilter(parseFilter(`FromAddress -eq "'; DROP TABLE q; --"`), PROPERTIES, NOW));
    assert.doesNotMatch(where, /DROP/);
    assert.deepEqual(params, ["'; DROP TABLE q; --"]);
  });

  it('points at the problem', () => {
    assert.equal(errorOf('{Status -eq "Retry" -and Subject -eq "unterminated}'), 'unexpected end of input at column 52: unterminated string');
    assert.equal(errorOf('Status -equals "Retry"'), 'unexpected "-equals" at column 8: unknown operator');
    assert.equal(errorOf('Status "Retry"'), 'unexpected "Retry" at column 8: expected an operator (-eq -ne -gt -ge -lt -le -like -notlike)');
    assert.equal(errorOf('{Status -eq "Retry"'), 'unexpected end of input at column 20: expected "}"');
    assert.equal(errorOf('Status -eq'), 'unexpected end of input at column 11: expected a value');
    assert.equal(errorOf('Status -eq Retry Status -eq Ready'), 'unexpected "Status" at column 18: expected the end of the expression');
    assert.equal(errorOf('(Status -eq Retry -or Status -eq Ready'), 'unexpected end of input at column 39: expected ")"');
    assert.equal(errorOf('Status -eq Retry -or'), 'unexpected end of input at column 21: expected a property name, "(" or -not');
    assert.equal(errorOf('-not -and Status -eq Retry'), 'unexpected "-and" at column 6: expected a property name, "(" or -not');
    assert.equal(errorOf('Status -eq Retry)'), 'unexpected ")" at column 17: expected the end of the expression');
    assert.match(errorOf(`${'('.repeat(100)}Status -eq Retry${')'.repeat(100)}`), /nested too deeply/);
    assert.match(errorOf('Colour -eq "red"'), /^bad property at column 12: unknown property "Colour"/);
    assert.equal(errorOf('MessageCount -gt many'), 'bad value "many" at column 18: expected a number');
    assert.equal(errorOf('Size -gt 12parsecs'), 'bad value "12parsecs" at column 10: expected a size such as 10MB');
    assert.equal(errorOf('DateReceived -lt "soon"'), 'bad value "soon" at column 18: expected a date (2026-11-24T10:00:00Z) or a time ago (-2h)');
    assert.equal(errorOf('MessageCount -like 5'), 'bad value "5" at column 20: -like compares text only');
    assert.equal(errorOf('MessageCount -notlike 5'), 'bad value "5" at column 23: -notlike compares text only');
  });

  it('refuses a status value that names no status, listing the known ones (issue 14)', () => {
    assert.equal(errorOf('Status -eq "Retrying"'), 'bad value "Retrying" at column 12: unknown status (known: Active, Ready, Retry, Suspended)');
    assert.equal(errorOf('MessageCount -gt 1 -or status -ne Frozen'), 'bad value "Frozen" at column 35: unknown status (known: Active, Ready, Retry, Suspended)');
    assert.equal(errorOf('Status -like "Pend*"'), 'bad value "Pend*" at column 14: no status matches (known: Active, Ready, Retry, Suspended)');
    assert.deepEqual(ids('Status -eq RETRY'), [1, 3], 'any case names a status');
    assert.deepEqual(ids('Status -like "Re*"'), [1, 2, 3]);
  });

  it('joins with -or, negates with -not, groups with parentheses; -and binds tighter than -or (issue 14)', () => {
    assert.deepEqual(ids('Status -eq Ready -or Status -eq Suspended'), [2, 4]);
    assert.deepEqual(ids('{Status -eq Ready -OR MessageCount -gt 1000 -and Status -eq Suspended}'), [2, 4], '-and first');
    assert.deepEqual(ids('(Status -eq Ready -or MessageCount -gt 1000) -and Status -ne Suspended'), [1, 2]);
    assert.deepEqual(ids('-not Status -eq Retry'), [2, 4]);
    assert.deepEqual(ids('-NOT (Status -eq Retry -or Size -lt 1KB)'), [2]);
    assert.deepEqual(ids('-not -not Status -eq Retry'), [1, 3]);
    assert.deepEqual(ids('{ ( ( FromAddress -like "*.com" ) ) }'), [1, 3]);
    assert.deepEqual(ids('Status -eq Retry -and -not (FromAddress -like "a*" -or DateReceived -lt -1d)'), []);
  });

  it('-notlike and -not keep what has no value; other comparisons never match a missing value (issue 14)', () => {
    assert.deepEqual(ids('LastError -like "*"'), [1, 3]);
    assert.deepEqual(ids('LastError -notlike "*timed out*"'), [2, 3, 4], 'no LastError is not like anything');
    assert.deepEqual(ids('-not (LastError -like "*timed*")'), [2, 3, 4]);
    assert.deepEqual(ids('LastError -ne "451 try later"'), [1]);
    assert.deepEqual(ids('-not LastError -eq "451 try later"'), [1, 2, 4]);
    assert.deepEqual(ids('FromAddress -notlike "*@example.com" -and FromAddress -notlike "b*"'), [4]);
    assert.deepEqual(ids('FromAddress -notlike "carol%"'), [1, 2, 3, 4], '% stays literal');
  });

  it('evaluates the same trees in memory as in SQL (the queue list)', () => {
    const rows = [
      { id: 1, status: 'Retry', message_count: 5000, last_error: '421 timed out' },
      { id: 2, status: 'Ready', message_count: 10, last_error: null },
    ];
    const props: PropertyMap = { status: PROPERTIES.status!, messagecount: PROPERTIES.messagecount!, lasterror: PROPERTIES.lasterror! };
    const inMemory = (expression: string) => rows.filter((r) => matchesFilter(resolveFilter(parseFilter(expression), props, NOW), r)).map((r) => r.id);
    for (const expression of ['Status -eq Ready -or MessageCount -gt 1000', '-not (Status -eq Ready)', 'LastError -notlike "*out"', '-not LastError -eq x', 'LastError -like "*"']) {
      assert.deepEqual(inMemory(expression), ids(expression).filter((id) => id <= 2), expression);
    }
  });
});

// The streaming body checks (IN-5) give the same verdict however the body is
// split into chunks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BodyInspector } from '../../src/intake/body-inspector.js';

function inspect(body: string, pieceBytes: number, maxLineLength = 998): BodyInspector {
  const inspector = new BodyInspector(maxLineLength);
  const bytes = Buffer.from(body, 'latin1');
  for (let i = 0; i < bytes.length; i += pieceBytes) inspector.inspect(bytes.subarray(i, i + pieceBytes));
  return inspector;
}

const SPLITS = [1, 2, 3, 7, 64, 100_000];

describe('BodyInspector', () => {
  it('reads Subject and Message-ID (unfolded) whatever the chunking', () => {
    const body = 'Received: x\r\nSubject: a long\r\n  folded subject\r\nMessage-ID: <id@x>\r\n\r\nSubject: not a header\r\n';
    for (const split of SPLITS) {
      const inspector = inspect(body, split);
      assert.equal(inspector.headerField('subject'), 'a long folded subject', `split ${split}`);
      assert.equal(inspector.headerField('message-id'), '<id@x>', `split ${split}`);
      assert.equal(inspector.problem, undefined);
    }
  });

  it('finds no header fields in a body that starts with the blank line', () => {
    assert.equal(inspect('\r\nSubject: body text\r\n', 1).headerField('subject'), undefined);
  });

  it('finds a bare LF, NUL and a long line across chunk boundaries', () => {
    for (const split of SPLITS) {
      assert.equal(inspect('a: b\r\n\r\nline\nnext\r\n', split).problem, 'bareLf', `split ${split}`);
      assert.equal(inspect('a: b\r\n\r\nx\0y\r\n', split).problem, 'nulOctet', `split ${split}`);
      assert.equal(inspect(`a: b\r\n\r\n${'x'.repeat(101)}\r\n`, split, 100).problem, 'lineTooLong', `split ${split}`);
      assert.equal(inspect(`a: b\r\n\r\n${'x'.repeat(100)}\r\n`, split, 100).problem, undefined, `split ${split}`);
    }
  });
});

// Messages a page at a time (QU-3, MG-4 web viewer): keyset paging over the
// store's list order (seq, then item), so the next page costs the same at the
// first message as at the millionth. The cursor is opaque to the caller.
import type { Condition } from '../store/types.js';
import { badRequest } from './errors.js';
import { conditionsFor, view, type MessageDeps, type MessageView } from './messages.js';

export interface MessagePage {
  messages: MessageView[];
  /** The cursor of the next page, or null on the last one. */
  next: string | null;
}

const num = (column: string, operator: '-gt' | '-eq' | '-ge', value: number): Condition => ({ column, operator, value, text: false });

/** The entries after a cursor `<seq>.<itemId>` (an empty itemId: the message's entry in Submission). */
function afterCursor(cursor: string): Condition {
  const match = /^(\d+)\.(\d*)$/.exec(cursor);
  if (!match) throw badRequest(`not a page cursor: ${cursor}`);
  const seq = Number(match[1]);
  // no item sorts first; any item id is 0 or more
  const sameMessage = match[2] === '' ? num('item_id', '-ge', 0) : num('item_id', '-gt', Number(match[2]));
  return { op: 'or', of: [num('seq', '-gt', seq), { op: 'and', of: [num('seq', '-eq', seq), sameMessage] }] };
}

export async function listMessagePage(deps: MessageDeps, filter: string | undefined, after: string | undefined, limit: number): Promise<MessagePage> {
  const conditions = [...conditionsFor(deps, filter ? { filter } : {}, false), ...(after ? [afterCursor(after)] : [])];
  const found = await deps.store.listMessages(conditions, limit + 1);
  const shown = found.slice(0, limit);
  const last = shown.at(-1);
  const next = found.length > limit && last?.seq !== undefined ? `${last.seq}.${last.itemId ?? ''}` : null;
  return { messages: shown.map((m) => view(deps.node, m)), next };
}

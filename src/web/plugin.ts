// The web queue viewer (MG-4), served by the management listener: a login page
// that takes the management token, then Queues, Messages, Message, Listeners
// and Configuration pages. A thin adapter over management/, like the API and
// the CLI: every action calls the same operation they do.
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { stringify } from 'yaml';
import type { ManagementDeps } from '../api/server.js';
import type { ReloadPlan } from '../management/reconfigure.js';
import { ConfigError, formatProblem } from '../config/load.js';
import { redactConfig } from '../management/config-view.js';
import { ManagementError } from '../management/errors.js';
import { FilterError } from '../management/filter.js';
import { listListeners, setListenerSuspended } from '../management/listeners.js';
import { listMessagePage } from '../management/message-pages.js';
import {
  exportMessage,
  listMessages,
  messageContent,
  planMessageAction,
  removeMessages,
  resumeMessages,
  suspendMessages,
  type MessageAction,
  type MessageSelector,
} from '../management/messages.js';
import type { Logger } from '../observability/logger.js';
import { actOnQueues, listQueues, type QueueAction } from '../management/queues.js';
import { APP_SCRIPT, HTMX_PATH, STYLE } from './assets.js';
import { SessionStore, clearCookie, cookieOf, sameSecret, setCookie, type Session } from './session.js';
import { History } from './history.js';
import { tarArchive } from './tar.js';
import {
  MESSAGE_ACTIONS,
  appliedPage,
  configPage,
  confirmPage,
  jobPage,
  jobProgress,
  listenersPage,
  loginPage,
  messagePage,
  messagesPage,
  planPage,
  problemPage,
  queueTable,
  queuesPage,
  type BulkAction,
  type JobView,
  type PageContext,
  type Section,
} from './views.js';

/** The paths the viewer serves; the API's bearer check leaves them to the session check here. */
export function isWebPath(url: string): boolean {
  const path = url.split('?')[0]!;
  return path === '/' || path === '/ui' || path.startsWith('/ui/');
}

/** Messages a page; how long an action may run before the page shows its progress instead of waiting. Tests change them. */
export const webSettings = { pageSize: 100, inlineWaitMs: 1500 };
/** Messages counted for a confirmation, and exported at once. */
const COUNT_LIMIT = 10_000;
const EXPORT_LIMIT = 1000;

type Form = Record<string, string | string[]>;

const first = (form: Form, name: string): string | undefined => {
  const value = form[name];
  return Array.isArray(value) ? value[0] : value;
};
const all = (form: Form, name: string): string[] => {
  const value = form[name];
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
};

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

declare module 'fastify' {
  interface FastifyRequest {
    webSession?: Session;
  }
}

export async function webViewer(app: FastifyInstance, deps: ManagementDeps & { token: string; logger: Logger }): Promise<void> {
  const sessions = new SessionStore();
  const htmx = await readFile(HTMX_PATH);
  const history = new History(deps);
  history.start();
  app.addHook('onClose', async () => history.stop());
  const jobs = new Map<string, JobView & { owner: string; endedAt?: number }>();

  // these routes are not part of the API's OpenAPI document
  app.addHook('onRoute', (route) => {
    route.schema = { ...(route.schema ?? {}), hide: true } as typeof route.schema;
  });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4 * 1024 * 1024 }, (_request, body, done) => {
    const form: Form = {};
    for (const [key, value] of new URLSearchParams(body as string)) {
      const before = form[key];
      form[key] = before === undefined ? value : Array.isArray(before) ? [...before, value] : [before, value];
    }
    done(null, form);
  });

  const open = new Set(['/ui/login', '/ui/static/app.css', '/ui/static/app.js', '/ui/static/htmx.min.js']);
  app.addHook('onRequest', async (request, reply) => {
    reply.headers(SECURITY_HEADERS);
    const path = request.url.split('?')[0]!;
    if (open.has(path)) return;
    const session = sessions.get(cookieOf(request.headers.cookie));
    if (!session) {
      if (request.method !== 'GET') return reply.code(403).type('text/plain').send('Forbidden');
      // an htmx poll after the session ended takes the whole page to the login
      if (request.headers['hx-request']) return reply.header('hx-redirect', '/ui/login').code(204).send();
      return reply.redirect('/ui/login', 303);
    }
    request.webSession = session;
  });
  // every state-changing request carries the session's CSRF token
  app.addHook('preHandler', async (request, reply) => {
    if (request.method === 'GET' || request.method === 'HEAD') return;
    if (request.url === '/ui/login') return;
    const given = first((request.body as Form | undefined) ?? {}, 'csrf') ?? '';
    if (!request.webSession || !sameSecret(given, request.webSession.csrf)) {
      return reply.code(403).type('text/html').send(problemPage('none', 'Forbidden', 'The form has expired. Go back, reload the page and try again.', { csrf: request.webSession?.csrf ?? '' }));
    }
  });

  const context = (request: FastifyRequest): PageContext => {
    const session = request.webSession!;
    const flash = session.flash;
    delete session.flash;
    return { csrf: session.csrf, flash: flash ? { text: flash.replace(/^!/, ''), bad: flash.startsWith('!') } : undefined };
  };
  const send = (reply: FastifyReply, body: string, code = 200) => reply.code(code).type('text/html; charset=utf-8').send(body);
  /** After an action: its outcome on the next page (a leading "!" marks a failure). */
  const done = (request: FastifyRequest, reply: FastifyReply, to: string, flash: string) => {
    request.webSession!.flash = flash;
    return reply.redirect(to, 303);
  };
  const describe = (error: unknown): string => {
    if (error instanceof FilterError || error instanceof ManagementError) return error.message;
    if (error instanceof ConfigError) return `${error.source}: ${error.problems.map(formatProblem).join('; ')}`;
    throw error;
  };

  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    const section: Section = 'none';
    const ctx = request.webSession ? context(request) : { csrf: '' };
    if (error instanceof ManagementError) return send(reply, problemPage(section, error.title, error.message, ctx), error.status);
    if (error instanceof FilterError || error instanceof ConfigError) return send(reply, problemPage(section, 'Bad request', describe(error), ctx), 400);
    if (error.statusCode && error.statusCode < 500) return send(reply, problemPage(section, 'Bad request', error.message, ctx), error.statusCode);
    deps.logger.error({ err: error, module: 'web' }, 'web viewer request failed');
    return send(reply, problemPage(section, 'Something went wrong', 'The request failed; see the server log.', ctx), 500);
  });

  // ---- assets
  const asset = (reply: FastifyReply, type: string, body: string | Buffer) => reply.type(type).header('cache-control', 'public, max-age=3600').send(body);
  app.get('/ui/static/app.css', (_request, reply) => asset(reply, 'text/css; charset=utf-8', STYLE));
  app.get('/ui/static/app.js', (_request, reply) => asset(reply, 'text/javascript; charset=utf-8', APP_SCRIPT));
  app.get('/ui/static/htmx.min.js', (_request, reply) => asset(reply, 'text/javascript; charset=utf-8', htmx));

  // ---- login and logout
  app.get('/', (_request, reply) => reply.redirect('/ui/queues', 303));
  app.get('/ui', (_request, reply) => reply.redirect('/ui/queues', 303));
  app.get<{ Querystring: { out?: string } }>('/ui/login', (request, reply) => {
    if (sessions.get(cookieOf(request.headers.cookie))) return reply.redirect('/ui/queues', 303);
    return send(reply, loginPage(request.query.out ? 'out' : 'new'));
  });
  app.post('/ui/login', (request, reply) => {
    const token = first((request.body as Form | undefined) ?? {}, 'token') ?? '';
    // constant time; a wrong token is refused without saying why
    if (!sameSecret(token, deps.token)) return send(reply, loginPage('failed'), 401);
    const before = cookieOf(request.headers.cookie);
    if (before) sessions.end(before);
    const session = sessions.create();
    return reply.header('set-cookie', setCookie(session.id)).redirect('/ui/queues', 303);
  });
  app.post('/ui/logout', (request, reply) => {
    sessions.end(request.webSession!.id);
    return reply.header('set-cookie', clearCookie()).redirect('/ui/login?out=1', 303);
  });

  // ---- queues
  app.get('/ui/queues', async (request, reply) => send(reply, queuesPage(await listQueues(deps), history.list(), context(request))));
  app.get('/ui/queues/table', async (request, reply) => send(reply, queueTable(await listQueues(deps), request.webSession!.csrf, history.list()).text));
  const QUEUE_ACTIONS: Record<string, [QueueAction, string]> = {
    suspend: ['suspend', 'Suspended'],
    resume: ['resume', 'Resumed'],
    retry: ['retry', 'Retried'],
    resubmit: ['resubmit', 'Resubmitted'],
  };
  app.post('/ui/queues/action', async (request, reply) => {
    const form = request.body as Form;
    const identity = first(form, 'identity') ?? '';
    const chosen = QUEUE_ACTIONS[first(form, 'action') ?? ''];
    if (!chosen) return done(request, reply, '/ui/queues', '!Unknown action.');
    try {
      const [result] = await actOnQueues(deps, { identity }, chosen[0]);
      const moved = result?.Messages !== undefined ? ` (${result.Messages} messages)` : '';
      return done(request, reply, '/ui/queues', `${chosen[1]} ${identity}${moved}.`);
    } catch (error) {
      return done(request, reply, '/ui/queues', `!${describe(error)}`);
    }
  });

  // ---- messages
  app.get<{ Querystring: { filter?: string; after?: string } }>('/ui/messages', async (request, reply) => {
    const filter = (request.query.filter ?? '').trim();
    const after = request.query.after || undefined;
    try {
      const found = await listMessagePage(deps, filter || undefined, after, webSettings.pageSize);
      return send(reply, messagesPage({ filter, after, ...found }, context(request)));
    } catch (error) {
      if (!(error instanceof FilterError)) throw error;
      return send(reply, messagesPage({ filter, after, messages: [], next: null, problem: { message: error.message, column: error.column } }, context(request)), 400);
    }
  });

  interface Bulk {
    action: BulkAction;
    scope: 'selected' | 'all';
    filter: string;
    ids: string[];
  }
  const bulkOf = (form: Form): Bulk | string => {
    const action = MESSAGE_ACTIONS.find(([value]) => value === first(form, 'action'))?.[0];
    if (!action) return 'Unknown action.';
    const scope = first(form, 'scope') === 'all' ? 'all' : 'selected';
    const filter = (first(form, 'filter') ?? '').trim();
    const ids = all(form, 'id');
    if (scope === 'selected' && ids.length === 0) return 'Select messages first, or choose "All that match the filter".';
    if (scope === 'all' && !filter) return 'Give a filter first: "All that match the filter" needs one.';
    return { action, scope, filter, ids: scope === 'all' ? [] : ids };
  };
  const selectors = (bulk: Bulk): MessageSelector[] => (bulk.scope === 'all' ? [{ filter: bulk.filter }] : bulk.ids.map((identity) => ({ identity })));
  const operation = (action: BulkAction): MessageAction | undefined =>
    action === 'remove-ndr' ? 'remove' : action === 'suspend' || action === 'resume' || action === 'remove' ? action : undefined;
  const listBack = (filter: string) => `/ui/messages${filter ? `?filter=${encodeURIComponent(filter)}` : ''}`;

  /** The entries the bulk action touches (at most COUNT_LIMIT per selector), as the operations' dry run says. */
  async function touched(bulk: Bulk): Promise<{ count: number; more: boolean; queues: Set<string> }> {
    let count = 0;
    let more = false;
    const queues = new Set<string>();
    const op = operation(bulk.action);
    for (const selector of selectors(bulk)) {
      try {
        const found = op ? await planMessageAction(deps, selector, op, COUNT_LIMIT) : await listMessages(deps, selector, bulk.action === 'export' ? EXPORT_LIMIT : COUNT_LIMIT);
        count += found.messages.length;
        more ||= found.truncated;
        for (const m of found.messages) queues.add(m.Queue);
      } catch (error) {
        // a selected message that is gone or in no state for the action touches nothing
        if (!(error instanceof ManagementError) || bulk.scope === 'all') throw error;
      }
    }
    return { count, more, queues };
  }

  app.post('/ui/messages/confirm', async (request, reply) => {
    const bulk = bulkOf(request.body as Form);
    if (typeof bulk === 'string') return done(request, reply, listBack(first(request.body as Form, 'filter') ?? ''), `!${bulk}`);
    try {
      const { count, more, queues } = await touched(bulk);
      const note =
        bulk.action === 'retry'
          ? `Retry acts on the queues that hold them (${[...queues].join(', ') || 'none'}): each connects now, and every deferred message in it becomes ready.`
          : bulk.action === 'export' && count > 1
            ? `They are downloaded as one .tar file of .eml files (at most ${EXPORT_LIMIT}).`
            : bulk.action === 'remove-ndr'
              ? 'The sender of each gets a non-delivery report.'
              : undefined;
      return send(reply, confirmPage({ ...bulk, count, more, ...(note ? { note } : {}) }, context(request)));
    } catch (error) {
      return done(request, reply, listBack(bulk.filter), `!${describe(error)}`);
    }
  });

  app.post('/ui/messages/act', async (request, reply) => {
    const bulk = bulkOf(request.body as Form);
    if (typeof bulk === 'string') return done(request, reply, '/ui/messages', `!${bulk}`);
    const back = listBack(bulk.filter);
    if (bulk.action === 'export') {
      try {
        return await exportDownload(bulk, reply);
      } catch (error) {
        return done(request, reply, back, `!${describe(error)}`);
      }
    }
    const { count } = await touched(bulk).catch(() => ({ count: 0 }));
    for (const [id, old] of jobs) if (old.endedAt !== undefined && Date.now() - old.endedAt > 10 * 60_000) jobs.delete(id);
    const job: JobView & { owner: string; endedAt?: number } = {
      id: randomBytes(12).toString('base64url'),
      owner: request.webSession!.id,
      title: `${MESSAGE_ACTIONS.find(([value]) => value === bulk.action)![1]}: ${bulk.scope === 'all' ? bulk.filter : `${bulk.ids.length} selected`}`,
      total: count,
      done: 0,
      finished: false,
      back,
    };
    jobs.set(job.id, job);
    const running = runBulk(bulk, job).then(
      (summary) => Object.assign(job, { summary, finished: true, done: job.total, endedAt: Date.now() }),
      (error: unknown) => {
        let summary: string;
        try {
          summary = describe(error);
        } catch {
          deps.logger.error({ err: error, module: 'web' }, 'bulk action failed');
          summary = 'The action failed; see the server log.';
        }
        Object.assign(job, { summary, failed: true, finished: true, endedAt: Date.now() });
      },
    );
    // a quick action ends on the list with its summary; a long one shows its progress
    if (webSettings.inlineWaitMs > 0) await Promise.race([running, new Promise((resolve) => setTimeout(resolve, webSettings.inlineWaitMs))]);
    if (job.finished) {
      jobs.delete(job.id);
      return done(request, reply, back, `${job.failed ? '!' : ''}${job.summary}`);
    }
    return reply.redirect(`/ui/jobs/${job.id}`, 303);
  });

  const jobOf = (request: FastifyRequest<{ Params: { id: string } }>) => {
    const job = jobs.get(request.params.id);
    if (!job || job.owner !== request.webSession!.id) throw new ManagementError(404, 'Not Found', 'no such action (it ended a while ago, or belongs to another session)');
    return job;
  };
  /** How far an action over a filter has got: what it applies to now, against what it applied to at the start. */
  async function progressOf(job: JobView & { bulk?: Bulk }): Promise<void> {
    if (job.finished || !job.bulk || job.bulk.scope !== 'all') return;
    const left = await touched(job.bulk).catch(() => undefined);
    if (left && !job.finished) job.done = Math.max(job.done, job.total - left.count);
  }
  app.get<{ Params: { id: string } }>('/ui/jobs/:id', async (request, reply) => {
    const job = jobOf(request);
    await progressOf(job);
    return send(reply, jobPage(job, context(request)));
  });
  app.get<{ Params: { id: string } }>('/ui/jobs/:id/progress', async (request, reply) => {
    const job = jobOf(request);
    await progressOf(job);
    return send(reply, jobProgress(job).text);
  });

  /** Runs a bulk action through the management operations; answers its summary. */
  async function runBulk(bulk: Bulk, job: JobView & { bulk?: Bulk }): Promise<string> {
    job.bulk = bulk;
    if (bulk.action === 'retry') {
      const { queues } = await touched(bulk);
      let ready = 0;
      for (const queue of queues) {
        const [result] = await actOnQueues(deps, { identity: queue }, 'retry').catch((error: unknown) => (error instanceof ManagementError ? [] : Promise.reject(error)));
        ready += result?.Messages ?? 0;
      }
      return `Retried ${queues.size} queue${queues.size === 1 ? '' : 's'}: ${ready} deferred messages made ready.`;
    }
    const totals: Record<string, number> = {};
    let skipped = 0;
    for (const selector of selectors(bulk)) {
      try {
        const result: Record<string, number> =
          bulk.action === 'suspend' ? await suspendMessages(deps, selector) : bulk.action === 'resume' ? await resumeMessages(deps, selector) : await removeMessages(deps, selector, bulk.action === 'remove-ndr');
        for (const [key, n] of Object.entries(result)) {
          totals[key] = (totals[key] ?? 0) + n;
          if (bulk.scope === 'selected') job.done += n;
        }
      } catch (error) {
        if (!(error instanceof ManagementError) || bulk.scope === 'all') throw error;
        skipped++;
      }
    }
    const summary = Object.entries(totals).map(([key, n]) => `${key}: ${n}`);
    if (skipped) summary.push(`not applicable: ${skipped}`);
    return `Done. ${summary.join(', ') || 'Nothing to do'}.`;
  }

  async function exportDownload(bulk: Bulk, reply: FastifyReply) {
    const identities =
      bulk.scope === 'all' ? (await listMessages(deps, { filter: bulk.filter }, EXPORT_LIMIT)).messages.map((m) => m.Identity) : bulk.ids.slice(0, EXPORT_LIMIT);
    if (identities.length === 1) {
      const { filename, content } = await exportMessage(deps, identities[0]!);
      return reply.type('message/rfc822').header('content-disposition', `attachment; filename="${filename}"`).send(Readable.from(content));
    }
    const files = async function* () {
      for (const identity of identities) {
        const exported = await exportMessage(deps, identity).catch((error: unknown) => (error instanceof ManagementError ? undefined : Promise.reject(error)));
        if (!exported) continue;
        const chunks: Buffer[] = [];
        for await (const chunk of exported.content) chunks.push(chunk);
        // one name per entry: a message in two queues exports twice
        yield { name: `${identity.split('/').slice(1).join('_')}.eml`, data: Buffer.concat(chunks) };
      }
    };
    return reply.type('application/x-tar').header('content-disposition', 'attachment; filename="sluice-export.tar"').send(Readable.from(tarArchive(files())));
  }

  app.get<{ Querystring: { identity?: string } }>('/ui/message', async (request, reply) => {
    const identity = request.query.identity ?? '';
    const { messages } = await listMessages(deps, { identity }, 100);
    const id = messages[0]!.Identity.split('/').at(-1)!;
    const { events } = await deps.tracking.search({ queueId: id }, 1000);
    const chunks: Buffer[] = [];
    for await (const chunk of await messageContent(deps, identity, true)) chunks.push(chunk);
    return send(reply, messagePage({ identity, entries: messages, events, headers: Buffer.concat(chunks).toString('utf8') }, context(request)));
  });
  app.get<{ Querystring: { identity?: string } }>('/ui/message/eml', async (request, reply) => {
    const { filename, content } = await exportMessage(deps, request.query.identity ?? '');
    return reply.type('message/rfc822').header('content-disposition', `attachment; filename="${filename}"`).send(Readable.from(content));
  });

  // ---- listeners
  app.get('/ui/listeners', async (request, reply) => send(reply, listenersPage(listListeners(deps), context(request))));
  app.post('/ui/listeners/action', async (request, reply) => {
    const form = request.body as Form;
    const name = first(form, 'name') ?? '';
    const action = first(form, 'action');
    if (action !== 'suspend' && action !== 'resume') return done(request, reply, '/ui/listeners', '!Unknown action.');
    try {
      const listener = await setListenerSuspended(deps, name, action === 'suspend');
      return done(request, reply, '/ui/listeners', `Listener ${listener.Name} is ${listener.Status}.`);
    } catch (error) {
      return done(request, reply, '/ui/listeners', `!${describe(error)}`);
    }
  });

  // ---- configuration
  app.get('/ui/config', async (request, reply) => send(reply, configPage(stringify(redactConfig(deps.reconfigurer.current())), context(request))));
  /** What a plan changes, without the message counts that move with the mail: a plan applied must be the plan shown. */
  const fingerprint = (plan: ReloadPlan) =>
    createHash('sha256')
      .update(JSON.stringify([plan.Queues.map((q) => [q.Identity, q.Action, Object.keys(q.To ?? {}).sort()]), plan.Listeners, plan.Routes, plan.RestartNeeded]))
      .digest('base64url');
  app.post('/ui/config/plan', async (request, reply) => {
    try {
      const plan = await deps.reconfigurer.planReload();
      return send(reply, planPage(plan, fingerprint(plan), context(request)));
    } catch (error) {
      return done(request, reply, '/ui/config', `!${describe(error)}`);
    }
  });
  app.post('/ui/config/apply', async (request, reply) => {
    try {
      // the file may have changed since the plan was shown: then the new plan is shown instead
      const now = await deps.reconfigurer.planReload();
      if (fingerprint(now) !== first(request.body as Form, 'plan')) return send(reply, planPage(now, fingerprint(now), context(request), true), 409);
      return send(reply, appliedPage(await deps.reconfigurer.reload(), context(request)));
    } catch (error) {
      return done(request, reply, '/ui/config', `!${describe(error)}`);
    }
  });
}

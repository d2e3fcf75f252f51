// How the CLI talks to a running Sluice, found as find-server.ts says. Errors
// carry the exit code scripts can rely on.
import { findServer } from './find-server.js';

export const EXIT = { ok: 0, failed: 1, usage: 2, noServer: 3, unauthorized: 4, notFound: 5, conflict: 6 } as const;

/** What went wrong, as `--json` prints it on stderr: the API's problem (title, status, detail) or the CLI's own. */
export interface CliProblem {
  title: string;
  detail: string;
  /** The HTTP status, when the server answered. */
  status?: number;
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly problem?: CliProblem,
  ) {
    super(message);
  }
}

type Query = Record<string, string | number | undefined>;

export interface ApiClient {
  get<T>(path: string, query?: Query): Promise<T>;
  post<T>(path: string, body: object): Promise<T>;
  /** A response body as it arrives (message export). */
  download(path: string, query: Query): Promise<ReadableStream<Uint8Array>>;
}

function exitCodeOf(status: number): number {
  if (status === 401) return EXIT.unauthorized;
  if (status === 404) return EXIT.notFound;
  if (status === 409) return EXIT.conflict;
  return status < 500 ? EXIT.usage : EXIT.failed;
}

export async function apiClient(configFlag: string | undefined): Promise<ApiClient> {
  const { url: base, token, tokenFile } = await findServer(configFlag);
  if (token === undefined) {
    const detail = `no Sluice server found: no management token in ${tokenFile}. Give the config file of the running server (--config or SLUICE_CONFIG), or SLUICE_MANAGEMENT_URL and SLUICE_TOKEN`;
    throw new CliError(detail, EXIT.noServer, { title: 'No server', detail });
  }

  async function request(path: string, init: { method: 'GET' | 'POST'; query?: Query; body?: object }): Promise<Response> {
    const target = new URL(path, base);
    for (const [key, value] of Object.entries(init.query ?? {})) if (value !== undefined) target.searchParams.set(key, String(value));
    let response: Response;
    try {
      response = await fetch(target, {
        method: init.method,
        headers: { authorization: `Bearer ${token}`, ...(init.body ? { 'content-type': 'application/json' } : {}) },
        ...(init.body ? { body: JSON.stringify(init.body) } : {}),
      });
    } catch (error) {
      const detail = `no Sluice server answers at ${base} (${(error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message}); is it running?`;
      throw new CliError(detail, EXIT.noServer, { title: 'No server', detail });
    }
    if (response.ok) return response;
    const problem = (await response.json().catch(() => ({}))) as { detail?: string; title?: string };
    const title = problem.title ?? response.statusText;
    throw new CliError(`${title}: ${problem.detail ?? ''}`.trim(), exitCodeOf(response.status), { title, detail: problem.detail ?? '', status: response.status });
  }

  return {
    async get<T>(path: string, query: Query = {}) {
      return (await (await request(path, { method: 'GET', query })).json()) as T;
    },
    async post<T>(path: string, body: object) {
      return (await (await request(path, { method: 'POST', body })).json()) as T;
    },
    async download(path: string, query: Query) {
      return (await request(path, { method: 'GET', query })).body!;
    },
  };
}

/** A plain text table: a header row, then one row per record. */
export function table(columns: string[], rows: Array<Record<string, unknown>>): string {
  const cells = rows.map((row) => columns.map((c) => (row[c] === null || row[c] === undefined ? '' : String(row[c]))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns), ...cells.map(line)].join('\n');
}

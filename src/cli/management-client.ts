// How the CLI talks to a running Sluice: the management API's URL and token from
// SLUICE_MANAGEMENT_URL / SLUICE_TOKEN, else from the config (and the token file
// in its data directory). Errors carry the exit code scripts can rely on.
import { managementToken } from '../api/token.js';
import { configPathFrom, loadConfig, managementClientEnv } from '../config/load.js';

export const EXIT = { ok: 0, failed: 1, usage: 2, noServer: 3, unauthorized: 4 } as const;

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export interface ApiClient {
  get<T>(path: string, query?: Record<string, string | undefined>): Promise<T>;
}

export async function apiClient(configFlag: string | undefined): Promise<ApiClient> {
  const env = managementClientEnv();
  let url = env.url;
  let token = env.token;
  if (!url || !token) {
    const { config } = await loadConfig(configPathFrom(configFlag));
    const { host, port } = config.management.listen;
    url ??= `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    token ??= await managementToken(config.management.token, config.dataDir);
  }
  return {
    async get<T>(path: string, query: Record<string, string | undefined> = {}): Promise<T> {
      const target = new URL(path, url);
      for (const [key, value] of Object.entries(query)) if (value !== undefined) target.searchParams.set(key, value);
      let response: Response;
      try {
        response = await fetch(target, { headers: { authorization: `Bearer ${token}` } });
      } catch (error) {
        throw new CliError(`no Sluice server answers at ${url} (${(error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message}); is it running?`, EXIT.noServer);
      }
      const body = (await response.json()) as T & { detail?: string; title?: string };
      if (response.ok) return body;
      const code = response.status === 401 ? EXIT.unauthorized : response.status < 500 ? EXIT.usage : EXIT.failed;
      throw new CliError(`${body.title ?? response.statusText}: ${body.detail ?? ''}`.trim(), code);
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

// Loads sluice.yaml (from --config, SLUICE_CONFIG or the embedded default),
// validates it against the one schema and reports every problem with its key
// path and line: `listeners[0].listen (line 4): invalid address ...`.
import { readFile } from 'node:fs/promises';
import { LineCounter, isMap, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { findFileProblems } from './files.js';
import { configJsonSchema, configSchema, type Config } from './schema.js';

export interface ConfigProblem {
  path: string;
  line?: number;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: ConfigProblem[],
  ) {
    super(`${source}: invalid configuration\n` + problems.map((p) => '  ' + formatProblem(p)).join('\n'));
    this.name = 'ConfigError';
  }
}

export function formatProblem(problem: ConfigProblem): string {
  const where = problem.path || '(top level)';
  return `${where}${problem.line ? ` (line ${problem.line})` : ''}: ${problem.message}`;
}

export interface LoadedConfig {
  config: Config;
  /** The file it came from, or "embedded default". */
  source: string;
}

/** Where the config comes from: the --config flag, then SLUICE_CONFIG, then none (embedded default). */
export function configPathFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return flag ?? (env.SLUICE_CONFIG || undefined);
}

/** Where the CLI finds a running server: SLUICE_MANAGEMENT_URL and SLUICE_TOKEN, when set. */
export function managementClientEnv(env: NodeJS.ProcessEnv = process.env): { url?: string; token?: string } {
  return { ...(env.SLUICE_MANAGEMENT_URL ? { url: env.SLUICE_MANAGEMENT_URL } : {}), ...(env.SLUICE_TOKEN ? { token: env.SLUICE_TOKEN } : {}) };
}

/**
 * `checkFiles`: also check what the config names on this machine (certificate and key files, the data
 * directory), as start, reload and `config check` do.
 */
export async function loadConfig(path: string | undefined, options: { checkFiles?: boolean } = {}): Promise<LoadedConfig> {
  if (path === undefined) return { config: parseConfigText('', 'embedded default'), source: 'embedded default' };
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(path, [{ path: '', message: `cannot read file: ${(error as Error).message}` }]);
  }
  // an emptied file (a failed copy, an editor's half-written save) is not a wish for the embedded default
  if (text.trim() === '') throw new ConfigError(path, [{ path: '', message: 'the file is empty; give at least one key (an empty file is never read as the embedded default)' }]);
  const { config, locate } = parseWithLines(text, path);
  if (options.checkFiles) {
    const problems = await findFileProblems(config);
    if (problems.length > 0) throw new ConfigError(path, problems.map((p) => ({ path: formatPath(p.path), line: locate(p.path), message: p.message })));
  }
  return { config, source: path };
}

export function parseConfigText(text: string, source: string): Config {
  return parseWithLines(text, source).config;
}

/** The config, and the line of any key path in the text. */
function parseWithLines(text: string, source: string): { config: Config; locate(path: (string | number)[]): number | undefined } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // one mistake makes the parser report several errors after it: the first one is where to look
    const [first] = doc.errors;
    const { line, col } = lineCounter.linePos(first!.pos[0]);
    throw new ConfigError(source, [{ path: '', line, message: `YAML syntax error at line ${line}, column ${col}: ${first!.message.split('\n')[0]}` }]);
  }
  const value: unknown = doc.toJS() ?? {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(source, [{ path: '', line: 1, message: 'expected keys and values (a YAML mapping), e.g. `listeners:`' }]);
  const result = configSchema.safeParse(value);
  if (result.success) return { config: result.data, locate: (path) => lineOf(doc, path, lineCounter, false) };
  const problems = result.error.issues.flatMap((issue) => describeIssue(issue, doc, lineCounter));
  throw new ConfigError(source, problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0)));
}

function describeIssue(issue: z.core.$ZodIssue, doc: Document, lines: LineCounter): ConfigProblem[] {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const suggestion = closest(key, knownKeysAt(path));
      return {
        path: formatPath([...path, key]),
        line: lineOf(doc, [...path, key], lines, true),
        message: suggestion ? `unknown key; did you mean "${suggestion}"?` : 'unknown key',
      };
    });
  }
  return [{ path: formatPath(path), line: lineOf(doc, path, lines, false), message: issue.message }];
}

interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  additionalProperties?: SchemaNode | boolean;
}

/** The keys the schema allows in the map at `path`. */
function knownKeysAt(path: (string | number)[]): string[] {
  let node: SchemaNode | undefined = configJsonSchema() as SchemaNode;
  for (const part of path) {
    if (!node) return [];
    if (typeof part === 'number') node = node.items;
    else node = node.properties?.[part] ?? (typeof node.additionalProperties === 'object' ? node.additionalProperties : undefined);
  }
  return Object.keys(node?.properties ?? {});
}

/** The known key nearest to a mistyped one, if it is near enough to be what was meant. */
function closest(key: string, known: string[]): string | undefined {
  let best: { key: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (!best || distance < best.distance) best = { key: candidate, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(key.length / 3)) ? best.key : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}

function formatPath(path: (string | number)[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

type Ranged = { range?: [number, number, number] } | null | undefined;

/** Line of the value at `path` (or of its key), walking up to the nearest node that exists. */
function lineOf(doc: Document, path: (string | number)[], lines: LineCounter, wantKey: boolean): number | undefined {
  if (wantKey && path.length > 0) {
    const parent = doc.getIn(path.slice(0, -1), true);
    const key = path[path.length - 1];
    const pair = isMap(parent) ? parent.items.find((item) => (item.key as { value?: unknown } | null)?.value === key) : undefined;
    const range = (pair?.key as Ranged)?.range;
    if (range) return lines.linePos(range[0]).line;
  }
  for (let depth = path.length; depth >= 0; depth--) {
    const node = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth), true);
    const range = (node as Ranged)?.range;
    if (range) return lines.linePos(range[0]).line;
  }
  return undefined;
}

// How the CLI finds the running server and its token: SLUICE_MANAGEMENT_URL and
// SLUICE_TOKEN when set; else the server that runs on the config's data
// directory, wherever it listens now (so `config check --diff` of a candidate
// file asks the running server, not the candidate's management address); else,
// without a config file, the server this user started on the embedded
// default, from whichever directory; else the config's management address.
import { readFile } from 'node:fs/promises';
import { configPathFrom, loadConfig, managementClientEnv } from '../config/load.js';
import { tokenFile } from '../api/token.js';
import { runningOn, runningOnEmbeddedDefault, type InstanceInfo } from '../runtime/instance.js';

export interface FoundServer {
  url: string;
  /** Undefined when neither the environment, the config nor the data directory has one. */
  token?: string;
  /** Where the token was looked for. */
  tokenFile: string;
  /** What the server published about itself, when one runs. */
  instance?: InstanceInfo;
}

/** The running server on this config's data directory (or the embedded default's), if any. */
export async function runningServer(configFlag: string | undefined): Promise<{ instance?: InstanceInfo; dataDir: string; configToken?: string; fallbackUrl: string }> {
  const path = configPathFrom(configFlag);
  const { config } = await loadConfig(path);
  const instance = (await runningOn(config.dataDir)) ?? (path === undefined ? await runningOnEmbeddedDefault() : undefined);
  const { host, port } = config.management.listen;
  return {
    ...(instance ? { instance } : {}),
    dataDir: instance?.dataDir ?? config.dataDir,
    ...(config.management.token ? { configToken: config.management.token } : {}),
    fallbackUrl: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
  };
}

export async function findServer(configFlag: string | undefined): Promise<FoundServer> {
  const env = managementClientEnv();
  if (env.url && env.token) return { url: env.url, token: env.token, tokenFile: 'SLUICE_TOKEN' };
  const found = await runningServer(configFlag);
  const file = tokenFile(found.dataDir);
  const token = env.token ?? found.configToken ?? (await readFile(file, 'utf8').then((text) => text.trim(), () => undefined));
  return { url: env.url ?? found.instance?.managementUrl ?? found.fallbackUrl, tokenFile: file, ...(token ? { token } : {}), ...(found.instance ? { instance: found.instance } : {}) };
}

// The management API from tests: JSON in and out, with the test token.
import { TEST_TOKEN } from './sluice.js';

export type Json = Record<string, unknown>;

export async function callApi<T = Json>(port: number, method: 'GET' | 'POST', path: string, payload?: unknown, token = TEST_TOKEN): Promise<{ status: number; json: T }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(payload === undefined ? {} : { body: typeof payload === 'string' ? payload : JSON.stringify(payload) }),
  });
  return { status: response.status, json: (await response.json()) as T };
}

/** The answer's JSON alone. */
export const apiJson = async <T = Json>(port: number, method: 'GET' | 'POST', path: string, payload?: unknown): Promise<T> =>
  (await callApi<T>(port, method, path, payload)).json;

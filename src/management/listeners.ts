// Listeners as an operator sees and steers them (IN-7, MG-4): list, suspend and
// resume. A suspended listener refuses new connections with 421 4.3.2 while
// sessions in progress finish; the store keeps the suspension across restarts.
import type { RunningListener } from '../intake/listener.js';
import type { QueueStore } from '../store/types.js';
import { notFound } from './errors.js';

export interface ListenerView {
  Name: string;
  Address: string;
  Status: 'Active' | 'Suspended';
}

export interface ListenerDeps {
  listeners: RunningListener[];
  store: QueueStore;
}

export function listListeners(deps: ListenerDeps): ListenerView[] {
  return deps.listeners.map((l) => ({
    Name: l.name,
    Address: l.address.family === 'IPv6' ? `[${l.address.address}]:${l.address.port}` : `${l.address.address}:${l.address.port}`,
    Status: l.suspended ? 'Suspended' : 'Active',
  }));
}

export async function setListenerSuspended(deps: ListenerDeps, name: string, suspended: boolean): Promise<ListenerView> {
  const listener = deps.listeners.find((l) => l.name === name);
  if (!listener) throw notFound(`no listener "${name}" (listeners: ${deps.listeners.map((l) => l.name).join(', ')})`);
  // stored first: a suspension that would not survive a restart is not reported as done
  await deps.store.setListenerSuspended(name, suspended);
  listener.suspended = suspended;
  return listListeners(deps).find((l) => l.Name === name)!;
}

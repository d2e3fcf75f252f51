// smtp-server gives no hook for each new connection before its session starts,
// but adds every connection to its public `connections` set first: that is the
// one place where Sluice's per-connection adjustments are made (never on the
// library's prototype, so another server in the same process is untouched).
import type { SMTPServer } from 'smtp-server';
import type { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

export type ConnectionPatch = (connection: SMTPConnection) => void;

export function patchEachConnection(server: SMTPServer, patch: ConnectionPatch): void {
  const connections = server.connections;
  const add = connections.add.bind(connections);
  connections.add = (connection) => {
    patch(connection);
    return add(connection);
  };
}

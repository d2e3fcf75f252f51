// Ports for next hops that tests stop and start again. A port from the
// ephemeral range (what listen(0) hands out) can be taken while the hop is
// down: by any outgoing connection's local end, or by Sluice itself when its
// connect to the dead port on loopback meets its own local port (TCP
// self-connect). Ports below that range are never handed out by the kernel,
// so a hop that listened there can come back on the same one. Test files run
// in processes of their own at the same time: each port is reserved with a
// file for as long as the process that took it runs, so a hop never comes up
// on a port another test still sends to (a dead port, or a hop that is down).
import { mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processExists } from '../../src/runtime/instance.js';

const LOWEST = 20_000;

function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > LOWEST + 1000) return low;
  } catch {
    // not Linux: the IANA dynamic range
  }
  return 49_152;
}

const ceiling = ephemeralLow();

// taken once: a test may point TMPDIR elsewhere for the processes it starts
const RESERVATIONS = join(tmpdir(), 'sluice-test-ports');
const reserved = new Set<string>();
process.on('exit', () => {
  for (const file of reserved) {
    try {
      unlinkSync(file);
    } catch {
      // gone already
    }
  }
});

/** Reserves the port for this process, unless a process that still runs has it. */
function reserve(port: number): boolean {
  mkdirSync(RESERVATIONS, { recursive: true });
  const file = join(RESERVATIONS, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      reserved.add(file);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const holder = Number(readFileSync(file, 'utf8'));
      if (holder === process.pid || processExists(holder)) return false;
      unlinkSync(file);
    }
  }
  return false;
}

interface Listenable {
  listen(port: number, host: string, callback: () => void): unknown;
  once(event: 'error', listener: (error: NodeJS.ErrnoException) => void): unknown;
  removeListener(event: 'error', listener: (error: NodeJS.ErrnoException) => void): unknown;
}

function tryListen(server: Listenable, port: number, host: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const failed = (error: NodeJS.ErrnoException) => (error.code === 'EADDRINUSE' ? resolve(false) : reject(error));
    server.once('error', failed);
    server.listen(port, host, () => {
      server.removeListener('error', failed);
      resolve(true);
    });
  });
}

/** Listens on a free port below the ephemeral range, reserved for this process; returns it. */
export async function listenOnStablePort(server: Listenable, host: string): Promise<number> {
  for (let tries = 0; tries < 200; tries++) {
    const port = LOWEST + Math.floor(Math.random() * (ceiling - LOWEST));
    if (reserve(port) && (await tryListen(server, port, host))) return port;
  }
  throw new Error(`no free port between ${LOWEST} and ${ceiling}`);
}

/** Listens on this port again, waiting while another socket still holds it. */
export async function listenAgain(server: Listenable, port: number, host: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await tryListen(server, port, host))) {
    if (Date.now() > deadline) throw new Error(`port ${port} on ${host} still in use after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Starts the inbound side of a process: an MLLP listener, a drop-folder watcher or a FHIR REST
 * poller for every configured channel that has one (`yilian serve` and the demo). Returns how to
 * stop each; reports each start through `onEvent`.
 */
import { DropFolder } from '../adapters/file/dropFolder';
import { FhirPoller } from '../adapters/fhir/poller';
import { MllpListener } from '../adapters/mllp/listener';
import type { Runtime } from './runtime';
import { UsageError } from './usageError';

export { UsageError };

/** EADDRINUSE/EACCES of a listening socket, as a UsageError naming the port; anything else as it is. */
export function portError(error: unknown, what: string, port: number, host?: string): unknown {
  const code = (error as NodeJS.ErrnoException)?.code;
  const where = `${what} port ${port}${host ? ` (${host}:${port})` : ''}`;
  if (code === 'EADDRINUSE') return new UsageError(`${where} is already in use`);
  if (code === 'EACCES') return new UsageError(`${where}: permission denied`);
  if (code === 'EADDRNOTAVAIL') return new UsageError(`${where}: address not available on this host`);
  return error;
}

export async function startListeners(runtime: Runtime, onEvent: (text: string) => void): Promise<Array<() => Promise<void> | void>> {
  const stops: Array<() => Promise<void> | void> = [];
  try {
    await startEach(runtime, onEvent, stops);
  } catch (error) {
    // What did start is stopped again: the caller gets the error, not half a set of listeners.
    for (const stop of stops.reverse()) await stop();
    throw error;
  }
  return stops;
}

async function startEach(runtime: Runtime, onEvent: (text: string) => void, stops: Array<() => Promise<void> | void>): Promise<void> {
  for (const member of runtime.config.members) {
    for (const channel of member.channels) {
      if (channel.kind === 'mllp') {
        // Connection and listener errors go to the log; a message's own events are metrics.
        const listener = new MllpListener(member, channel, runtime.intake, (event, payload) => {
          if (event === 'connectionError') onEvent(`MLLP ${member.id}/${channel.id}: ${(payload as { error: string }).error}`);
        });
        let port: number;
        try {
          port = await listener.start();
        } catch (error) {
          throw portError(error, `MLLP ${member.id}/${channel.id}`, channel.port, channel.host);
        }
        onEvent(`MLLP ${member.id}/${channel.id} on port ${port} (${channel.charset}, ${channel.ackMode} ACKs)`);
        stops.push(() => listener.close());
      } else if (channel.kind === 'fhir-rest' && channel.intervalSeconds) {
        const poller = new FhirPoller(runtime.db, runtime.queues, member, { ...channel, intervalSeconds: channel.intervalSeconds }, onEvent);
        poller.start();
        onEvent(`FHIR REST ${member.id}/${channel.id} pulling ${channel.baseUrl} every ${channel.intervalSeconds} s`);
        stops.push(() => poller.stop());
      } else if (channel.kind === 'file') {
        const folder = new DropFolder(member, channel, runtime.intake, { log: onEvent });
        await folder.start();
        onEvent(`file ${member.id}/${channel.id} watching ${channel.dir}`);
        stops.push(() => folder.stop());
      }
    }
  }
}

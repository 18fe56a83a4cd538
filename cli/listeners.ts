/**
 * Starts the inbound side of a process: an MLLP listener, a drop-folder watcher or a FHIR REST
 * poller for every configured channel that has one (`yilian serve` and the demo). Returns how to
 * stop each; reports each start through `onEvent`.
 */
import { DropFolder } from '../adapters/file/dropFolder';
import { FhirPoller } from '../adapters/fhir/poller';
import { MllpListener } from '../adapters/mllp/listener';
import type { Runtime } from './runtime';

export async function startListeners(runtime: Runtime, onEvent: (text: string) => void): Promise<Array<() => Promise<void> | void>> {
  const stops: Array<() => Promise<void> | void> = [];
  for (const member of runtime.config.members) {
    for (const channel of member.channels) {
      if (channel.kind === 'mllp') {
        // Connection and listener errors go to the log; a message's own events are metrics.
        const listener = new MllpListener(member, channel, runtime.intake, (event, payload) => {
          if (event === 'connectionError') onEvent(`MLLP ${member.id}/${channel.id}: ${(payload as { error: string }).error}`);
        });
        const port = await listener.start();
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
  return stops;
}

/**
 * Runs a fhir-rest channel's pull every `intervalSeconds` inside `yilian serve`. One pull at a time
 * per channel (a slow pull delays the next instead of overlapping it); a failed pull is logged and
 * tried again at the next interval — its cursor is where its last stored page left it.
 */
import type { HubDb } from '../../hub/sql';
import type { FhirRestChannelConfig, MemberConfig } from '../../hub/config';
import type { Enqueuer } from '../intake';
import { clientFor } from './connect';
import { RestPuller } from './restPull';
import { FhirIntake } from './store';

export class FhirPoller {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  /** Pulls finished (successfully or not), for status and tests. */
  pulls = 0;

  constructor(
    private readonly db: HubDb,
    private readonly pipeline: Enqueuer,
    private readonly member: MemberConfig,
    private readonly channel: FhirRestChannelConfig & { intervalSeconds: number },
    private readonly log: (text: string) => void,
  ) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.pullOnce().finally(() => {
        this.pulls++;
        if (!this.stopped) this.timer = setTimeout(tick, this.channel.intervalSeconds * 1000);
      });
    };
    tick();
  }

  private async pullOnce(): Promise<void> {
    try {
      const puller = new RestPuller(this.db, new FhirIntake(this.db, this.pipeline, { log: this.log, keepIds: false }), this.member, this.channel, clientFor(this.channel, { log: this.log }), { log: this.log });
      const results = await puller.pullAll();
      const stored = results.reduce((n, r) => n + r.stored, 0);
      if (stored) this.log(`FHIR pull ${this.member.id}/${this.channel.id}: stored ${stored}`);
    } catch (error) {
      this.log(`FHIR pull ${this.member.id}/${this.channel.id} failed (next try in ${this.channel.intervalSeconds} s): ${(error as Error).message}`);
    }
  }

  /** Stop scheduling; wait for a pull in progress to finish storing. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }
}

/**
 * What the HTTP face is handed by the process that serves it (cli/runtime.ts opens these): the
 * configuration, the hub store, the partition queues and the intake. Routes reach the hub through
 * this and nothing global, so a test can serve them over any store.
 */
import type { RawIntake } from '../adapters/intake';
import type { HubConfig } from '../hub/config';
import type { HubDb } from '../hub/sql';
import type { PipelineQueues } from '../pipeline/queues';

export interface ApiContext {
  config: HubConfig;
  db: HubDb;
  queues: PipelineQueues;
  intake: RawIntake;
}

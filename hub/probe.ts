/**
 * A probe of something outside the process (PostgreSQL, Redis) that answers within a bound or
 * counts as down: `/ready` (api/server.ts) and a worker waiting out a PostgreSQL outage
 * (pipeline/worker.ts) ask the same question. A pool connect or a queued command may otherwise wait
 * far longer than the caller can. The timer is cleared either way; a probe still running when it
 * fires keeps a handler, so its late failure is never an unhandled rejection.
 */
import type { Sql } from './sql';

/** Undefined when `run` settled successfully within `ms`; else why not (its error, or the timeout). */
export async function answersWithin(run: () => Promise<unknown>, ms: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const work = Promise.resolve().then(run);
  work.catch(() => undefined);
  try {
    await Promise.race([work, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)))]);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  } finally {
    clearTimeout(timer);
  }
}

/** Whether PostgreSQL answers a trivial query within `ms` (undefined: it does; else why not). */
export function postgresAnswers(db: Sql, ms: number): Promise<string | undefined> {
  return answersWithin(() => db.query('SELECT 1'), ms);
}

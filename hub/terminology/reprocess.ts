/**
 * Reprocessing after an approval or a retirement: reprocess_job rows and their runner, which
 * re-derives only the map stage's own output on the affected resources — the one place governance
 * writes resources, safe to repeat because mappings/terminology/mapResource.ts is idempotent. One
 * runner per job, held by a lease. The periodic terminology sync of long-running processes lives
 * here too: its sweep is what resumes a job whose runner died (in versions.ts it would close an
 * import loop).
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { HubDb, Sql } from '../sql';
import { HubError } from '../../mappings/outcome';
import { mapResource, recordOnProvenance } from '../../mappings/terminology/mapResource';
import { MAPPED_SOURCE_URL, MAP_VERSION_URL, UNMAPPED_SOURCE_URL } from '../../mappings/terminology/systems';
import { affectedWhere, type SourceCode } from './impact';
import { canonicalJson, event, syncTerminology } from './versions';
import { getProposal } from './workflow';

export interface ReprocessJob {
  id: number;
  state: 'running' | 'done' | 'failed';
  source_codes: SourceCode[];
  reason: string;
  total: number;
  done: number;
  changed: number;
  created_by: string;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
  error: string | null;
  /** Who runs it now (host:pid:random) and until when its lease holds; null when nobody does. */
  runner: string | null;
  lease_until: Date | null;
}

/** Create a reprocess job for the records carrying these source codes (run it with runReprocess). */
export async function createReprocessJob(db: HubDb, codes: SourceCode[], actor: string, reason = ''): Promise<ReprocessJob> {
  if (!codes.length) throw new HubError('invalid', 'give at least one source code to reprocess', 'codes');
  const where = affectedWhere(codes, 1);
  const total = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM resource WHERE ${where.sql}`, where.params);
  return db.transaction(async (tx) => {
    const job = await tx.query<ReprocessJob>(`INSERT INTO reprocess_job (state, source_codes, reason, total, created_by) VALUES ('running', $1, $2, $3, $4) RETURNING *`, [
      JSON.stringify(codes),
      reason,
      total.rows[0]!.n,
      actor,
    ]);
    await event(tx, { actor, action: 'reprocess', comment: reason, detail: { job: job.rows[0]!.id, codes } });
    return job.rows[0]!;
  });
}

/** The reprocess job for an approved (or retired) proposal's source code. */
export async function reprocessProposal(db: HubDb, id: number, actor: string): Promise<ReprocessJob> {
  const p = await getProposal(db, id);
  if (p.state !== 'approved' && p.state !== 'retired') throw new HubError('invalid', `proposal ${id} is ${p.state}: reprocess follows an approval or a retirement`, 'state');
  return createReprocessJob(db, [{ system: p.source_system, code: p.source_code }], actor, `proposal ${id} ${p.state}`);
}

export async function getReprocessJob(db: Sql, id: number): Promise<ReprocessJob> {
  const job = (await db.query<ReprocessJob>(`SELECT * FROM reprocess_job WHERE id = $1`, [id])).rows[0];
  if (!job) throw new HubError('not-found', `reprocess job ${id} not found`);
  return job;
}

/** A runner's identity on the job row: host, process and a random part (two runs in one process differ). */
function runnerId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/** Thrown when the job is held by another runner whose lease has not run out. */
function heldBy(job: { id: number; runner: string | null; lease_until: Date | null }): HubError {
  return new HubError('invalid', `reprocess job ${job.id} is being run by ${job.runner} (lease until ${job.lease_until?.toISOString()}); it resumes here once that lease runs out`, 'job', true);
}

/**
 * Run (or resume) a job: re-derive the map stage's output on each affected resource with the
 * active maps, in key order, batch by batch, recording the last key after each batch. Idempotent:
 * a resource already up to date is not written; running a finished or interrupted job again is safe.
 *
 * One runner at a time (migration 9): the runner takes a lease on the job row, renews it with every
 * batch and on a timer between, and writes each batch only while it still holds the lease — a
 * second runner is refused while the lease is live, and takes over (from the last key) once a
 * crashed runner's lease has run out. Each batch also rewrites, for the messages whose resources
 * changed, every row's `mapping_versions` and the message Provenance's ConceptMap entities, so the
 * record of which map versions derived the stored state stays true after a reprocess.
 */
interface CoverageFlip {
  memberId: string;
  rawId: number;
  system: string;
  code: string;
  /** The source code's occurrences are now mapped (an approval) or no longer (a retirement). */
  mapped: boolean;
}

/** The source codings of a resource the map stage marked mapped / unmapped (meta.extension). */
function sourceStates(content: Record<string, unknown>): Map<string, { system: string; code: string; mapped: boolean }> {
  const out = new Map<string, { system: string; code: string; mapped: boolean }>();
  const extensions = (content.meta as { extension?: unknown } | undefined)?.extension;
  if (!Array.isArray(extensions)) return out;
  for (const e of extensions as Array<{ url?: string; valueCoding?: { system?: string; code?: string } }>) {
    if (e?.url !== MAPPED_SOURCE_URL && e?.url !== UNMAPPED_SOURCE_URL) continue;
    const { system, code } = e.valueCoding ?? {};
    if (!system || !code) continue;
    const key = `${system}\u0000${code}`;
    // Mapped if any of its occurrences in the record is mapped: the coverage counters count per element, and a re-derivation maps them all alike.
    out.set(key, { system, code, mapped: (out.get(key)?.mapped ?? false) || e.url === MAPPED_SOURCE_URL });
  }
  return out;
}

/** Source codes whose mapped state a re-derivation changed (unmapped → mapped after an approval, the reverse after a retirement). */
export function mappedFlips(before: Record<string, unknown>, after: Record<string, unknown>): Array<{ system: string; code: string; mapped: boolean }> {
  const was = sourceStates(before);
  const out: Array<{ system: string; code: string; mapped: boolean }> = [];
  for (const [key, now] of sourceStates(after)) {
    const then = was.get(key);
    if (then && then.mapped !== now.mapped) out.push(now);
  }
  return out;
}

/**
 * Keep coverage true to the stored records after a re-derivation. The counting trigger ignores
 * re-derivations (same raw id: not a new occurrence), so without this a code whose map was approved
 * and reprocessed stayed at 0 % in coverage while the approval had already emptied the worklist.
 * The code's counted occurrences of this member and channel move, on every day, to the state its
 * records have now; a retirement reopens its worklist entry. Idempotent: moving twice moves nothing.
 */
async function moveCoverage(tx: Sql, flips: CoverageFlip[]): Promise<void> {
  const ordered = [...flips].sort((a, b) => (a.memberId + a.system + a.code < b.memberId + b.system + b.code ? -1 : 1));
  for (const f of ordered) {
    await tx.query(
      `WITH moved AS (
         DELETE FROM coded_element_day
          WHERE member_id = $1 AND channel_id = coalesce((SELECT channel_id FROM raw_message WHERE id = $2), '') AND system = $3 AND code = $4 AND mapped = NOT $5::boolean
         RETURNING day, member_id, channel_id, system, code, occurrences
       )
       INSERT INTO coded_element_day (day, member_id, channel_id, system, code, mapped, occurrences)
       SELECT day, member_id, channel_id, system, code, $5::boolean, occurrences FROM moved ORDER BY day
       ON CONFLICT (day, member_id, channel_id, system, code, mapped) DO UPDATE SET occurrences = coded_element_day.occurrences + excluded.occurrences`,
      [f.memberId, f.rawId, f.system, f.code, f.mapped],
    );
    if (!f.mapped) await tx.query(`UPDATE unmapped_code SET state = 'open', resolved_at = NULL WHERE member_id = $1 AND system = $2 AND code = $3 AND state = 'resolved'`, [f.memberId, f.system, f.code]);
  }
}

export async function runReprocess(db: HubDb, id: number, options: { batchSize?: number; leaseMs?: number; onProgress?: (job: ReprocessJob) => unknown } = {}): Promise<ReprocessJob> {
  const terminology = await syncTerminology(db);
  const me = runnerId();
  const leaseMs = options.leaseMs ?? 30_000;
  const current = await getReprocessJob(db, id);
  if (current.state === 'done') return current;
  const taken = await db.query<ReprocessJob & { last_type: string | null; last_id: string | null }>(
    `UPDATE reprocess_job SET runner = $2, lease_until = clock_timestamp() + $3 * interval '1 millisecond', state = 'running', error = NULL, updated_at = clock_timestamp()
      WHERE id = $1 AND state <> 'done' AND (runner IS NULL OR lease_until IS NULL OR lease_until < clock_timestamp())
      RETURNING *`,
    [id, me, leaseMs],
  );
  if (taken.rowCount === 0) {
    const now = await getReprocessJob(db, id);
    if (now.state === 'done') return now;
    throw heldBy(now);
  }
  let job: ReprocessJob = taken.rows[0]!;
  let lost = false;
  const heartbeat = setInterval(() => {
    db.query(`UPDATE reprocess_job SET lease_until = clock_timestamp() + $3 * interval '1 millisecond' WHERE id = $1 AND runner = $2`, [id, me, leaseMs])
      .then((r) => {
        if (r.rowCount === 0) lost = true;
      })
      .catch(() => undefined);
  }, Math.max(50, Math.floor(leaseMs / 3)));
  heartbeat.unref();
  const codes = job.source_codes;
  const where = affectedWhere(codes, 3);
  const batchSize = options.batchSize ?? 200;
  let lastType = taken.rows[0]!.last_type ?? '';
  let lastId = taken.rows[0]!.last_id ?? '';
  try {
    for (;;) {
      if (lost) throw new HubError('invalid', `reprocess job ${id}: this runner lost its lease; another runner continues`, 'job', true);
      const rows = await db.query<{ resource_type: string; id: string; raw_id: number; member_id: string; content: Record<string, unknown> }>(
        `SELECT resource_type, id, raw_id, member_id, content FROM resource WHERE (resource_type, id) > ($1, $2) AND ${where.sql} ORDER BY resource_type, id LIMIT ${batchSize}`,
        [lastType, lastId, ...where.params],
      );
      if (rows.rowCount === 0) break;
      await db.transaction(async (tx) => {
        // Fencing first: the batch is written only by the lease holder, and the lease is renewed.
        const held = await tx.query(`UPDATE reprocess_job SET lease_until = clock_timestamp() + $3 * interval '1 millisecond' WHERE id = $1 AND runner = $2`, [id, me, leaseMs]);
        if (held.rowCount === 0) {
          lost = true;
          throw new HubError('invalid', `reprocess job ${id}: this runner lost its lease; another runner continues`, 'job', true);
        }
        let changed = 0;
        const messages = new Set<number>();
        const flips = new Map<string, CoverageFlip>();
        for (const row of rows.rows) {
          const content = JSON.parse(JSON.stringify(row.content)) as Record<string, unknown>;
          mapResource(content, { terminology });
          if (canonicalJson(content) === canonicalJson(row.content)) continue;
          // Same raw id: the counting trigger does not see a new occurrence.
          const updated = await tx.query(
            `UPDATE resource SET content = $3, version = version + 1, updated_at = clock_timestamp() WHERE resource_type = $1 AND id = $2 AND content = $4::jsonb`,
            [row.resource_type, row.id, JSON.stringify(content), JSON.stringify(row.content)],
          );
          changed += updated.rowCount;
          if (updated.rowCount) {
            messages.add(Number(row.raw_id));
            for (const flip of mappedFlips(row.content, content)) flips.set(`${row.member_id}\u0000${row.raw_id}\u0000${flip.system}\u0000${flip.code}`, { memberId: row.member_id, rawId: Number(row.raw_id), ...flip });
          }
        }
        for (const rawId of messages) await rewriteMessageProvenance(tx, rawId);
        await moveCoverage(tx, [...flips.values()]);
        const tail = rows.rows[rows.rows.length - 1]!;
        lastType = tail.resource_type;
        lastId = tail.id;
        await tx.query(`UPDATE reprocess_job SET done = done + $2, changed = changed + $3, last_type = $4, last_id = $5, updated_at = clock_timestamp() WHERE id = $1 AND runner = $6`, [
          id,
          rows.rowCount,
          changed,
          lastType,
          lastId,
          me,
        ]);
      });
      job = await getReprocessJob(db, id);
      await options.onProgress?.(job);
    }
    const finished = await db.query(
      `UPDATE reprocess_job SET state = 'done', error = NULL, runner = NULL, lease_until = NULL, finished_at = clock_timestamp(), updated_at = clock_timestamp() WHERE id = $1 AND runner = $2`,
      [id, me],
    );
    if (finished.rowCount === 0) throw new HubError('invalid', `reprocess job ${id}: this runner lost its lease; another runner continues`, 'job', true);
  } catch (error) {
    // Only the lease holder records the failure and lets go; a runner that lost the lease leaves the row to the new one.
    await db.query(`UPDATE reprocess_job SET state = 'failed', error = $2, runner = NULL, lease_until = NULL, updated_at = clock_timestamp() WHERE id = $1 AND runner = $3`, [id, (error as Error).message, me]);
    throw error;
  } finally {
    clearInterval(heartbeat);
  }
  return getReprocessJob(db, id);
}

/**
 * After a reprocess changed resources of one message: the map versions that derived what is stored
 * from it (the union over its current resources' meta, as the map stage computes it) go on every
 * row of the message (`mapping_versions`, as the merge writes it) and on its Provenance as
 * ConceptMap entities (mappings/terminology/mapResource.ts `recordOnProvenance`, the same function the map stage uses).
 */
async function rewriteMessageProvenance(tx: Sql, rawId: number): Promise<void> {
  const rows = await tx.query<{ resource_type: string; id: string; content: Record<string, unknown>; mapping_versions: string[] }>(
    `SELECT resource_type, id, content, mapping_versions FROM resource WHERE raw_id = $1 ORDER BY resource_type, id`,
    [rawId],
  );
  const versions = new Set<string>();
  for (const row of rows.rows) {
    const meta = row.content.meta as { extension?: Array<{ url: string; valueCanonical?: string }> } | undefined;
    for (const e of meta?.extension ?? []) if (e.url === MAP_VERSION_URL && e.valueCanonical) versions.add(e.valueCanonical);
  }
  const mappingVersions = [...versions].sort();
  for (const row of rows.rows) {
    if (row.resource_type === 'Provenance') {
      const content = JSON.parse(JSON.stringify(row.content)) as Record<string, unknown>;
      recordOnProvenance(content, mappingVersions);
      if (canonicalJson(content) !== canonicalJson(row.content)) {
        await tx.query(`UPDATE resource SET content = $3, mapping_versions = $4, version = version + 1, updated_at = clock_timestamp() WHERE resource_type = $1 AND id = $2`, [row.resource_type, row.id, JSON.stringify(content), mappingVersions]);
        continue;
      }
    }
    if (row.mapping_versions.join(' ') !== mappingVersions.join(' ')) {
      await tx.query(`UPDATE resource SET mapping_versions = $3 WHERE resource_type = $1 AND id = $2`, [row.resource_type, row.id, mappingVersions]);
    }
  }
}

// ---- resuming jobs whose runner died -----------------------------------------------------------

/**
 * Periodic sync for long-running processes (workers); returns a stop function. Every 30 s it also
 * resumes reprocess jobs whose runner died (resumeStaleReprocessJobs): any worker may pick one up,
 * the job's lease keeps it to one runner.
 */
export function startTerminologySync(db: HubDb, intervalMs = 5000, log?: (text: string) => void): () => void {
  let lastSweep = Date.now();
  const timer = setInterval(() => {
    syncTerminology(db).catch((error) => log?.(`terminology sync: ${(error as Error).message}`));
    if (Date.now() - lastSweep >= STALE_JOB_GRACE_MS) {
      lastSweep = Date.now();
      resumeStaleReprocessJobs(db, log).catch((error) => log?.(`reprocess sweep: ${(error as Error).message}`));
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** How long past its lease (or since it was created, if nobody took it) a running job waits before another process resumes it. */
const STALE_JOB_GRACE_MS = 30_000;

/**
 * Resume, in the background, the reprocess jobs left `running` by a runner that is gone: lease
 * expired for more than STALE_JOB_GRACE_MS (or never taken for that long). Returns the job ids
 * started; each runs under its own lease, so two processes sweeping at once do not both run one.
 */
export async function resumeStaleReprocessJobs(db: HubDb, log?: (text: string) => void): Promise<number[]> {
  const stale = await db.query<{ id: number }>(
    `SELECT id FROM reprocess_job WHERE state = 'running' AND coalesce(lease_until, updated_at) < clock_timestamp() - $1 * interval '1 millisecond' ORDER BY id LIMIT 5`,
    [STALE_JOB_GRACE_MS],
  );
  const ids = stale.rows.map((r) => Number(r.id));
  for (const id of ids) {
    runReprocess(db, id).then(
      (job) => log?.(`reprocess job ${id} resumed: ${job.done}/${job.total}, ${job.changed} changed`),
      (error) => log?.(`reprocess job ${id}: ${(error as Error).message}`),
    );
  }
  return ids;
}

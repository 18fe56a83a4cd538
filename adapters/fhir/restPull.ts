/**
 * Incremental REST pull of one fhir-rest channel: per resource type, search
 * `_lastUpdated=ge<cursor>&_sort=_lastUpdated&_count=<pageSize>` and follow the Bundle `next` links.
 * Each page is stored in the raw store first (one transaction), then the cursor moves to the page's
 * latest lastUpdated. A crash anywhere resumes from the last stored page; what is read twice (the
 * `ge` boundary, the page being stored when the crash came) is a duplicate in the raw store, not a
 * second record.
 *
 * Why `ge` and not `gt`: several resources can share one lastUpdated (millisecond clocks, batch
 * writes); `gt` would lose the ones after a page boundary inside such a tie.
 *
 * Offset paging and concurrent updates: most servers page a search by offset. A resource updated
 * while we page moves to the end of the result (it has a new lastUpdated), and everything after its
 * old position moves up one place — so one resource at a later page boundary is skipped. We see that
 * happen when a resource comes back in the same sweep with another version; then the cursor is rolled
 * back to where that resource's first version was read and the sweep is run again (bounded), which
 * reads the skipped ones (and dedupes the rest). What cannot be seen this way is a deletion between
 * pages (same shift, nothing comes back): documented in docs/fhir-adapters.md.
 */
import type { Bundle, BundleEntry, FhirResource } from 'fhir/r4';
import type { HubDb } from '../../hub/sql';
import type { FhirRestChannelConfig, MemberConfig } from '../../hub/config';
import type { FhirClient } from './client';
import { loadCursor, saveCursor } from './cursor';
import { nameResource, type FhirSource } from './resource';
import { addResults, emptyResult, type BatchResult, type FhirIntake } from './store';

export interface TypePullResult extends BatchResult {
  resourceType: string;
  pages: number;
  sweeps: number;
  cursor?: string;
}

export interface PullOptions {
  log?: (text: string) => void;
  /** Called after each page is stored and its cursor saved (progress, tests). */
  onPage?: (event: { resourceType: string; page: number; result: BatchResult; cursor?: string }) => void;
  /** Sweeps per type when resources keep shifting under us (see the header). */
  maxSweeps?: number;
}

const time = (instant: string | undefined) => (instant ? Date.parse(instant) : Number.NaN);

export class RestPuller {
  private readonly source: FhirSource;

  constructor(
    private readonly db: HubDb,
    private readonly intake: FhirIntake,
    member: MemberConfig,
    private readonly channel: FhirRestChannelConfig,
    private readonly client: FhirClient,
    private readonly options: PullOptions = {},
  ) {
    this.source = { memberId: member.id, channelId: channel.id, server: channel.baseUrl };
  }

  async pullAll(): Promise<TypePullResult[]> {
    const results: TypePullResult[] = [];
    for (const type of this.channel.resourceTypes) results.push(await this.pullType(type));
    return results;
  }

  async pullType(resourceType: string): Promise<TypePullResult> {
    const total: TypePullResult = { resourceType, pages: 0, sweeps: 0, ...emptyResult() };
    const maxSweeps = this.options.maxSweeps ?? 5;
    for (;;) {
      total.sweeps++;
      const sweep = await this.sweep(resourceType, total);
      total.cursor = sweep.cursor;
      if (sweep.rollbackTo === undefined) break;
      // Roll the cursor back so a crash from here on still reads the skipped ones.
      await saveCursor(this.db, this.source.memberId, this.source.channelId, resourceType, sweep.rollbackTo);
      total.cursor = sweep.rollbackTo;
      if (total.sweeps >= maxSweeps) {
        this.options.log?.(`${this.source.memberId}/${this.source.channelId} ${resourceType}: resources still changing while paged after ${total.sweeps} sweeps; the next pull continues from ${sweep.rollbackTo}`);
        break;
      }
      this.options.log?.(`${this.source.memberId}/${this.source.channelId} ${resourceType}: resources changed between pages; sweeping again from ${sweep.rollbackTo}`);
    }
    return total;
  }

  /** One pass over the search result from the saved cursor. */
  private async sweep(resourceType: string, total: TypePullResult): Promise<{ cursor?: string; rollbackTo?: string }> {
    const { memberId, channelId } = this.source;
    let cursor = await loadCursor(this.db, memberId, channelId, resourceType);
    const params: Record<string, string> = {
      ...this.channel.searchParams[resourceType],
      _sort: '_lastUpdated',
      _count: String(this.channel.pageSize),
      ...(cursor ? { _lastUpdated: `ge${cursor}` } : {}),
    };
    /** id → version read in this sweep, and the cursor before the page it was read on. */
    const seen = new Map<string, { version: string; cursorBefore: string | undefined }>();
    let rollbackTo: string | undefined;
    let rollbackFloor = Number.POSITIVE_INFINITY;
    let bundle: Bundle | undefined = await this.client.search(resourceType, params);
    while (bundle) {
      const resources = (bundle.entry ?? [])
        .filter((e: BundleEntry) => e.resource?.resourceType === resourceType && e.search?.mode !== 'include' && e.search?.mode !== 'outcome')
        .map((e) => e.resource as FhirResource);
      const named = resources.map((r) => nameResource(this.source, Buffer.from(JSON.stringify(r)), r));
      const result = await this.intake.storeBatch(named);
      addResults(total, result);
      total.pages++;
      const cursorBefore = cursor;
      for (const r of resources) {
        const version = r.meta?.versionId ?? r.meta?.lastUpdated ?? '';
        const earlier = r.id ? seen.get(r.id) : undefined;
        if (earlier && earlier.version !== version) {
          // Updated between pages: positions after its old place shifted; read again from there.
          const floor = earlier.cursorBefore === undefined ? Number.NEGATIVE_INFINITY : time(earlier.cursorBefore);
          if (floor < rollbackFloor) {
            rollbackFloor = floor;
            rollbackTo = earlier.cursorBefore ?? '0001-01-01T00:00:00Z';
          }
        }
        if (r.id) seen.set(r.id, { version, cursorBefore: earlier?.cursorBefore ?? cursorBefore });
        const lastUpdated = r.meta?.lastUpdated;
        if (lastUpdated && !Number.isNaN(time(lastUpdated)) && (cursor === undefined || time(lastUpdated) > time(cursor))) cursor = lastUpdated;
      }
      // The page is in the raw store: now the cursor may move.
      if (cursor !== undefined && cursor !== cursorBefore) await saveCursor(this.db, memberId, channelId, resourceType, cursor);
      this.options.onPage?.({ resourceType, page: total.pages, result, cursor });
      bundle = await this.client.nextPage(bundle);
    }
    return { cursor, rollbackTo };
  }
}

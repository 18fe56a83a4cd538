/**
 * The committee's workflow over the maps: proposal → approved / rejected, approved → retired, each
 * step with who, when and a comment in mapping_event. Owns mapping_proposal. An approval or a
 * retirement is a new map version (versions.ts) and changes nothing stored until reprocess
 * (reprocess.ts). Never edits the WHO map (CC BY-ND): it changes only by importing a WHO release.
 */
import type { HubDb, Sql } from '../sql';
import { HubError } from '../../mappings/outcome';
import { EQUIVALENCES, type ConceptMap, type ConceptMapElement, type Equivalence } from '../../mappings/terminology/conceptmap';
import { describeCode } from '../../mappings/terminology/codeSystems';
import { CONCEPT_MAP_BASE, ICD10, ICD10_CN, ICD11_MMS, LOINC, UCUM, WHO_MAP_URL, localSystemMember } from '../../mappings/terminology/systems';
import { activeTerminology } from './active';
import { activeMaps, ensureSeeded, event, newVersion, syncTerminology } from './versions';
import { loincConcentrationKind, resolveWorklist, unitMismatches } from './worklist';

export interface ProposalInput {
  sourceSystem: string;
  sourceCode: string;
  sourceDisplay?: string;
  targetSystem: string;
  targetCode?: string;
  targetDisplay?: string;
  equivalence: Equivalence;
  comment?: string;
  /** Default: the map for this source and target system (a member's local map is created when it has none). */
  conceptMapUrl?: string;
}

export interface Proposal {
  id: number;
  concept_map_url: string;
  source_system: string;
  source_code: string;
  source_display: string | null;
  target_system: string;
  target_code: string | null;
  target_display: string | null;
  equivalence: Equivalence;
  state: 'proposed' | 'approved' | 'rejected' | 'retired';
  base_version: number | null;
  result_version: number | null;
  proposed_by: string;
  proposed_at: Date;
  comment: string;
}

/** The map a proposal for (source → target) belongs to: an existing active one, or a new local one. */
export function defaultMapUrl(maps: ConceptMap[], sourceSystem: string, targetSystem: string): string {
  const found = maps.find((m) => m.url !== WHO_MAP_URL && m.group.some((g) => g.source === sourceSystem && g.target === targetSystem));
  if (found) return found.url;
  const member = localSystemMember(sourceSystem);
  const name = sourceSystem.split(':').pop()!;
  if (member) return `${CONCEPT_MAP_BASE}/${`local-${member}-${decodeURIComponent(name)}`.replace(/[^A-Za-z0-9\-.]/g, '-')}`;
  // The committee's own ICD-10 / clinical-edition additions: the WHO table is never edited (CC BY-ND).
  if (sourceSystem === ICD10 && targetSystem === ICD11_MMS) return `${CONCEPT_MAP_BASE}/icd10-icd11-committee`;
  if (sourceSystem === ICD10_CN) return `${CONCEPT_MAP_BASE}/icd10cn-icd11-committee`;
  throw new HubError('invalid', `no map from ${sourceSystem} to ${targetSystem}; name one with conceptMapUrl`, 'conceptMapUrl');
}

export async function propose(db: HubDb, input: ProposalInput, actor: string): Promise<Proposal> {
  await ensureSeeded(db);
  if (!EQUIVALENCES.includes(input.equivalence)) throw new HubError('invalid', `equivalence must be one of ${EQUIVALENCES.join(', ')}`, 'equivalence');
  if (input.equivalence !== 'unmatched' && !input.targetCode) throw new HubError('invalid', 'targetCode is required unless equivalence is unmatched', 'targetCode');
  if (input.targetCode && [ICD11_MMS, LOINC, ICD10, UCUM].includes(input.targetSystem)) {
    const info = describeCode(activeTerminology(), input.targetSystem, input.targetCode);
    if (!info.valid) throw new HubError('invalid', `target ${input.targetSystem}#${input.targetCode}: ${info.message}`, 'targetCode');
  }
  const maps = await activeMaps(db);
  const url = input.conceptMapUrl ?? defaultMapUrl(maps, input.sourceSystem, input.targetSystem);
  if (url === WHO_MAP_URL) throw new HubError('invalid', 'the WHO ICD-10 → ICD-11 table is shipped unaltered (CC BY-ND 3.0 IGO): propose into the committee map instead (leave conceptMapUrl out)', 'conceptMapUrl');
  const current = await db.query<{ version: number }>(`SELECT version FROM concept_map_version WHERE url = $1 AND status = 'active'`, [url]);
  return db.transaction(async (tx) => {
    const row = await tx.query<Proposal>(
      `INSERT INTO mapping_proposal (concept_map_url, source_system, source_code, source_display, target_system, target_code, target_display, equivalence, state, base_version, proposed_by, comment)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'proposed', $9, $10, $11) RETURNING *`,
      [url, input.sourceSystem, input.sourceCode, input.sourceDisplay ?? null, input.targetSystem, input.targetCode ?? null, input.targetDisplay ?? null, input.equivalence, current.rows[0]?.version ?? null, actor, input.comment ?? ''],
    );
    const proposal = row.rows[0]!;
    await event(tx, { actor, action: 'propose', url, proposalId: proposal.id, comment: input.comment });
    return proposal;
  });
}

export async function getProposal(db: Sql, id: number): Promise<Proposal> {
  const row = await db.query<Proposal>(`SELECT * FROM mapping_proposal WHERE id = $1`, [id]);
  if (!row.rows[0]) throw new HubError('not-found', `proposal ${id} not found`);
  return row.rows[0];
}

/** Proposals (newest first, at most 500; or the one with `id`), each with its steps (who, when, comment). */
export async function listProposals(db: Sql, state?: string, id?: number): Promise<Array<Proposal & { steps: unknown[] }>> {
  const rows =
    id !== undefined
      ? await db.query<Proposal>(`SELECT * FROM mapping_proposal WHERE id = $1`, [id])
      : await db.query<Proposal>(`SELECT * FROM mapping_proposal ${state ? 'WHERE state = $1' : ''} ORDER BY id DESC LIMIT 500`, state ? [state] : []);
  const steps = await db.query<{ proposal_id: number; action: string; actor: string; at: Date; comment: string; version: number | null }>(
    `SELECT proposal_id, action, actor, at, comment, version FROM mapping_event WHERE proposal_id = ANY($1::bigint[]) ORDER BY id`,
    [rows.rows.map((r) => r.id)],
  );
  return rows.rows.map((p) => ({ ...p, steps: steps.rows.filter((s) => s.proposal_id === p.id).map(({ proposal_id: _, ...s }) => s) }));
}

/** The map as it would be with the proposal applied (`remove`: with its mapping taken out). */
export function applyProposal(map: ConceptMap | undefined, p: Proposal, remove = false): ConceptMap {
  const base: ConceptMap = map
    ? (JSON.parse(JSON.stringify(map)) as ConceptMap)
    : {
        resourceType: 'ConceptMap',
        id: p.concept_map_url.split('/').pop()!,
        url: p.concept_map_url,
        version: '0',
        title: `${p.source_system} → ${p.target_system}`,
        status: 'active',
        publisher: 'Yilian Hub data-governance committee',
        group: [],
      };
  let group = base.group.find((g) => g.source === p.source_system && g.target === p.target_system);
  if (!group) base.group.push((group = { source: p.source_system, target: p.target_system, element: [] }));
  const index = group.element.findIndex((e) => e.code === p.source_code);
  if (remove) {
    if (index >= 0) {
      const element = group.element[index]!;
      element.target = (element.target ?? []).filter((t) => !(t.code === (p.target_code ?? undefined) && t.equivalence === p.equivalence));
      if (element.target.length === 0) group.element.splice(index, 1);
    }
    return base;
  }
  const element: ConceptMapElement = {
    code: p.source_code,
    ...(p.source_display ? { display: p.source_display } : {}),
    target: [{ ...(p.target_code ? { code: p.target_code } : {}), ...(p.target_display ? { display: p.target_display } : {}), equivalence: p.equivalence, ...(p.comment ? { comment: p.comment } : {}) }],
  };
  if (index >= 0) group.element[index] = element;
  else group.element.push(element);
  return base;
}

async function activeMap(tx: Sql, url: string): Promise<{ content: ConceptMap; version: number } | undefined> {
  return (await tx.query<{ content: ConceptMap; version: number }>(`SELECT content, version FROM concept_map_version WHERE url = $1 AND status = 'active'`, [url])).rows[0];
}

/**
 * What the committee should consider before (or after) approving: the units the source code's stored
 * results arrive in that do not fit the target's property (mmol/L under the mass code 2345-7). Not a
 * refusal — the map stage converts through the analyte's molar mass — but the substance code is
 * usually the faithful target.
 */
export async function approvalWarnings(db: Sql, p: Pick<Proposal, 'concept_map_url' | 'source_system' | 'source_code' | 'source_display' | 'target_system' | 'target_code'>): Promise<string[]> {
  if (p.target_system !== LOINC || !p.target_code || !loincConcentrationKind(p.target_code)) return [];
  const found = await unitMismatches(db, {
    mappings: [{ system: p.source_system, code: p.source_code, display: p.source_display, target: p.target_code, conceptMapUrl: p.concept_map_url }],
  });
  return found.map((m) => `${m.message} (${m.count} of ${m.total} stored results)`);
}

/** How the committee decides (hub config `governance`). */
export interface GovernanceOptions {
  /** Four eyes (default true): whoever proposed a mapping cannot approve it. Off only for a one-person hub. */
  fourEyes?: boolean;
}

/** The four-eyes refusal: a HubError `conflict` (409 on the API, one line and exit 1 on the CLI). */
export function assertFourEyes(options: GovernanceOptions, what: string, proposedBy: string, actor: string): void {
  if ((options.fourEyes ?? true) && proposedBy === actor) {
    throw new HubError('conflict', `${what} was proposed by ${actor}; four-eyes rule: another committee member must approve it (governance.fourEyes in the hub config)`, 'actor');
  }
}

/**
 * Approve: a new map version with the mapping; the worklist entry is resolved. Nothing else changes
 * until reprocess. `warnings`: the observed units that do not fit the target (approvalWarnings); the
 * approval goes through regardless, the warning is recorded on the approve event. Four eyes (default):
 * the proposer cannot approve their own proposal.
 */
export async function approve(db: HubDb, id: number, actor: string, comment = '', options: GovernanceOptions = {}): Promise<{ proposal: Proposal; version: number; warnings: string[] }> {
  const result = await db.transaction(async (tx) => {
    const locked = await tx.query<Proposal>(`SELECT * FROM mapping_proposal WHERE id = $1 FOR UPDATE`, [id]);
    const p = locked.rows[0];
    if (!p) throw new HubError('not-found', `proposal ${id} not found`);
    if (p.state !== 'proposed') throw new HubError('invalid', `proposal ${id} is ${p.state}; only a proposed mapping can be approved`, 'state');
    assertFourEyes(options, `proposal ${id}`, p.proposed_by, actor);
    const current = await activeMap(tx, p.concept_map_url);
    const map = applyProposal(current?.content, p);
    // Read under the proposal's lock, before the new version: the units already stored decide the warning.
    const warnings = await approvalWarnings(tx, p);
    const version = await newVersion(tx, map, { origin: 'proposal', actor, comment: comment || `approved proposal ${id}`, proposalId: id });
    const updated = await tx.query<Proposal>(`UPDATE mapping_proposal SET state = 'approved', result_version = $2 WHERE id = $1 RETURNING *`, [id, version]);
    await event(tx, { actor, action: 'approve', url: p.concept_map_url, version, proposalId: id, comment, ...(warnings.length ? { detail: { warnings } } : {}) });
    await resolveWorklist(tx, map);
    return { proposal: updated.rows[0]!, version, warnings };
  });
  await syncTerminology(db);
  return result;
}

export async function reject(db: HubDb, id: number, actor: string, comment = ''): Promise<Proposal> {
  return db.transaction(async (tx) => {
    const p = (await tx.query<Proposal>(`SELECT * FROM mapping_proposal WHERE id = $1 FOR UPDATE`, [id])).rows[0];
    if (!p) throw new HubError('not-found', `proposal ${id} not found`);
    if (p.state !== 'proposed') throw new HubError('invalid', `proposal ${id} is ${p.state}; only a proposed mapping can be rejected`, 'state');
    const updated = await tx.query<Proposal>(`UPDATE mapping_proposal SET state = 'rejected' WHERE id = $1 RETURNING *`, [id]);
    await event(tx, { actor, action: 'reject', url: p.concept_map_url, proposalId: id, comment });
    return updated.rows[0]!;
  });
}

/** Retire an approved mapping: a new map version without it. */
export async function retire(db: HubDb, id: number, actor: string, comment = ''): Promise<{ proposal: Proposal; version: number }> {
  const result = await db.transaction(async (tx) => {
    const p = (await tx.query<Proposal>(`SELECT * FROM mapping_proposal WHERE id = $1 FOR UPDATE`, [id])).rows[0];
    if (!p) throw new HubError('not-found', `proposal ${id} not found`);
    if (p.state !== 'approved') throw new HubError('invalid', `proposal ${id} is ${p.state}; only an approved mapping can be retired`, 'state');
    const current = await activeMap(tx, p.concept_map_url);
    const version = await newVersion(tx, applyProposal(current?.content, p, true), { origin: 'retirement', actor, comment: comment || `retired proposal ${id}`, proposalId: id });
    const updated = await tx.query<Proposal>(`UPDATE mapping_proposal SET state = 'retired' WHERE id = $1 RETURNING *`, [id]);
    await event(tx, { actor, action: 'retire', url: p.concept_map_url, version, proposalId: id, comment });
    return { proposal: updated.rows[0]!, version };
  });
  await syncTerminology(db);
  return result;
}

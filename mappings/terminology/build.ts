/**
 * Builds the ConceptMaps shipped under mappings/conceptmaps/ from their sources: the WHO
 * ICD-10 → ICD-11 table (the seed extract in data/who/, or a site's full official release file),
 * the LOINC subset's canonical units (the molar masses on both codes of each pair from the analyte
 * table, data/analytes.json), and the demo members' local lab maps. Run by `yilian mappings build`
 * — the JSON files are generated, reviewed and kept in git (test/terminology-shipped.test.ts checks
 * that they are what the build gives).
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { canonicalUnitsConceptMap, readWhoTable, whoConceptMap, type ConceptMap } from './conceptmap';
import { loincSubset, shippedConceptMapDir, terminologyDataDir } from './shipped';
import { analytes } from './analytes';
import { CONCEPT_MAP_BASE, LOINC } from './systems';

export const SEED_WHO_TABLE = () => path.join(terminologyDataDir(), 'who', 'icd10-to-icd11-one-category.E-I-J-K.csv');

/** A member's local lab codes → LOINC, as the demo members' committee approved them. */
export function localLabMap(memberId: string, systemName: string, rows: Array<[code: string, display: string, loinc: string]>, version = '1'): ConceptMap {
  const loinc = new Map(loincSubset().map((c) => [c.code, c]));
  const id = `local-${memberId}-${systemName}`.replace(/[^A-Za-z0-9\-.]/g, '-');
  return {
    resourceType: 'ConceptMap',
    id,
    url: `${CONCEPT_MAP_BASE}/${id}`,
    version,
    name: `Local${systemName}${memberId}`.replace(/[^A-Za-z0-9]/g, ''),
    title: `${memberId} local ${systemName} codes → LOINC`,
    status: 'active',
    publisher: 'Yilian Hub data-governance committee',
    group: [
      {
        source: `urn:yilian:${memberId}:${encodeURIComponent(systemName)}`,
        target: LOINC,
        element: rows.map(([code, display, target]) => ({ code, display, target: [{ code: target, display: loinc.get(target)?.display, equivalence: 'equivalent' as const }] })),
      },
    ],
  };
}

/**
 * The WHO ICD-10 → ICD-11 map from the release files: `10To11MapToOneCategory.txt` and, when given,
 * `10To11MapToMultipleCategories.txt` merged into the same map (a code with several targets keeps
 * each, `narrower`). Without files: the seed extract.
 */
export function buildWhoMap(options: { whoTable?: string; whoMultiple?: string; version?: string } = {}): ConceptMap {
  const files = [options.whoTable ?? SEED_WHO_TABLE(), ...(options.whoMultiple ? [options.whoMultiple] : [])];
  return whoConceptMap(
    files.flatMap((f) => readWhoTable(f)),
    {
      version: options.version ?? '1',
      sourceNote: options.whoTable
        ? `Built from ${files.map((f) => path.basename(f)).join(' and ')}.`
        : 'Built from the seed extract (chapters E, I, J and common K blocks); a site names the full release files in the hub config (terminology.whoMapOneCategory, whoMapMultipleCategories) and runs `yilian mappings build --import`.',
    },
  );
}

export function buildBaseMaps(options: { whoTable?: string; whoMultiple?: string; outDir?: string; version?: string } = {}): string[] {
  const outDir = options.outDir ?? shippedConceptMapDir();
  mkdirSync(outDir, { recursive: true });
  const maps: ConceptMap[] = [
    buildWhoMap(options),
    // Molar masses from the analyte table (one source of truth), on both codes of each pair.
    canonicalUnitsConceptMap(loincSubset(), options.version ?? '1', analytes()),
    // The demo's lead hospital and county hospital LIS codes (cli/simulate.ts); the community
    // centre's are left unmapped on purpose so the demo shows the worklist.
    localLabMap('lead', 'L', [
      ['HGB', '血红蛋白', '718-7'],
      ['WBC', '白细胞计数', '6690-2'],
      ['PLT', '血小板计数', '777-3'],
      ['GLU', '葡萄糖', '14749-6'],
      ['CREA', '肌酐', '14682-9'],
      ['CHOL', '总胆固醇', '14647-2'],
    ]),
    localLabMap('county', 'L', [
      ['HGB', '血红蛋白', '718-7'],
      ['WBC', '白细胞计数', '6690-2'],
      ['PLT', '血小板计数', '777-3'],
    ]),
  ];
  return maps.map((map) => {
    const file = path.join(outDir, `${map.id}.json`);
    writeFileSync(file, `${JSON.stringify(map, null, 2)}\n`);
    return file;
  });
}

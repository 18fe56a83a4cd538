/**
 * CodeSystem/$lookup and $validate-code over the systems the hub knows: ICD-10 and its China
 * clinical edition (syntax, and the ICD-10 parent), ICD-11 MMS (expression syntax; existence of
 * every stem and extension code and English / Chinese titles when the site's MMS tabulation is
 * loaded, else syntax only and the message says so), LOINC (the shipped subset with Chinese
 * designations, or a site's full table) and UCUM (any valid unit expression). The site's release
 * files are named in the hub config (`terminology`, hub/config.ts). Answers are FHIR R4 `Parameters`.
 */
import { readFileSync } from 'node:fs';
import { UcumLhcUtils } from '@lhncbc/ucum-lhc';
import { HubError } from '../outcome';
import { isIcd11Extension, parseIcd11 } from './icd11';
import { isIcd10Code, reduceClinicalEdition, icd10Parent } from './icd10';
import { loincSubset } from './shipped';
import type { Terminology } from './translator';
import { ICD10, ICD10_CN, ICD11_MMS, LOINC, UCUM } from './systems';

export interface Parameters {
  resourceType: 'Parameters';
  parameter: ParametersParameter[];
}
export interface ParametersParameter {
  name: string;
  valueString?: string;
  valueBoolean?: boolean;
  valueCode?: string;
  valueUri?: string;
  valueCoding?: { system?: string; code?: string; display?: string };
  part?: ParametersParameter[];
}

export interface CodeInfo {
  valid: boolean;
  message?: string;
  display?: string;
  designations?: Array<{ language: string; value: string }>;
  parent?: string;
  name: string;
  /** Further $lookup properties (ICD-11: kind, chapter, leaf, residual from the tabulation). */
  properties?: Record<string, string | boolean>;
}

/** One row of the MMS tabulation: titles by language and where the code sits. */
interface Icd11Entry {
  en?: string;
  zh?: string;
  classKind?: string;
  chapter?: string;
  leaf?: boolean;
  residual?: boolean;
}

/** ICD-11 MMS codes from a site's tabulation (code → entry), loaded by `loadIcd11Tabulation`. */
const icd11Tabulation = new Map<string, Icd11Entry>();

/**
 * Load the WHO MMS tabulation: the official `SimpleTabulation-ICD-11-MMS-<lang>` export (the
 * browser's "spreadsheet" download; its xlsx saved as tab-separated text, or the txt form), or the
 * older `LinearizationMiniOutput-MMS-<lang>.txt`. Tab-separated; columns found by name: Code and
 * Title are required, ClassKind, ChapterNo, isLeaf and IsResidual are read when present. Rows
 * without a code (chapters, blocks) are skipped; the leading "- " depth markers of Title are
 * removed. `language` says which title the file holds (WHO publishes one file per language).
 * Returns the codes read.
 */
export function loadIcd11Tabulation(file: string, language: 'en' | 'zh'): number {
  if (/\.xlsx?$/i.test(file)) throw new HubError('invalid', `${file}: the spreadsheet form is not read; save it as tab-separated text (or use the txt export)`, file);
  const lines = readFileSync(file, 'utf8').replace(/^\uFEFF/, '').split(/\r?\n/);
  const unquote = (v: string | undefined) => (v ?? '').trim().replace(/^"(.*)"$/, '$1').replace(/""/g, '"');
  const header = lines[0]!.split('\t').map((h) => unquote(h).toLowerCase());
  const col = (name: string) => header.indexOf(name.toLowerCase());
  const code = col('code');
  const title = col('title');
  if (code < 0 || title < 0) throw new HubError('invalid', `${file}: needs Code and Title columns (the MMS tabulation, tab-separated); found ${header.join(', ')}`, file);
  const classKind = col('classkind');
  const chapter = col('chapterno');
  const leaf = col('isleaf');
  const residual = col('isresidual');
  const yes = (v: string) => /^(true|1|yes)$/i.test(v);
  let n = 0;
  for (const line of lines.slice(1)) {
    if (!line.trim()) continue;
    const cells = line.split('\t');
    const c = unquote(cells[code]);
    if (!c) continue;
    const entry: Icd11Entry = { ...icd11Tabulation.get(c), [language]: unquote(cells[title]).replace(/^(?:-\s*)+/, '').trim() };
    if (classKind >= 0 && unquote(cells[classKind])) entry.classKind = unquote(cells[classKind]);
    if (chapter >= 0 && unquote(cells[chapter])) entry.chapter = unquote(cells[chapter]);
    if (leaf >= 0 && unquote(cells[leaf])) entry.leaf = yes(unquote(cells[leaf]));
    if (residual >= 0 && unquote(cells[residual])) entry.residual = yes(unquote(cells[residual]));
    icd11Tabulation.set(c, entry);
    n++;
  }
  return n;
}

/** Whether a tabulation is loaded (existence of ICD-11 codes is checked only then). */
export function icd11TabulationLoaded(): boolean {
  return icd11Tabulation.size > 0;
}

const ucum = UcumLhcUtils.getInstance();

/** One CSV line with RFC 4180 quoting (Loinc.csv quotes every field; names contain commas). */
export function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(field);
      field = '';
    } else field += ch;
  }
  out.push(field);
  return out;
}

/** The full LOINC table (`Loinc.csv` of a LOINC release), when a site loads it: code → long common name. */
const loincTable = new Map<string, string>();

/** Load `Loinc.csv` (columns LOINC_NUM and LONG_COMMON_NAME, found by name); returns the codes read. */
export function loadLoincTable(file: string): number {
  const lines = readFileSync(file, 'utf8').replace(/^\uFEFF/, '').split(/\r?\n/);
  const header = splitCsvLine(lines[0]!).map((h) => h.trim().toUpperCase());
  const code = header.indexOf('LOINC_NUM');
  const name = header.indexOf('LONG_COMMON_NAME');
  if (code < 0 || name < 0) throw new HubError('invalid', `${file}: needs LOINC_NUM and LONG_COMMON_NAME columns`, file);
  let n = 0;
  for (const line of lines.slice(1)) {
    if (!line) continue;
    const cells = splitCsvLine(line);
    if (cells[code]) {
      loincTable.set(cells[code]!, cells[name] ?? '');
      n++;
    }
  }
  return n;
}

/** Official release files a site has (hub/config.ts `terminology`). */
export interface SiteTerminologyFiles {
  whoMapOneCategory?: string;
  whoMapMultipleCategories?: string;
  icd11Tabulation?: { en?: string; zh?: string };
  loincTable?: string;
}

let siteFiles: SiteTerminologyFiles = {};
let siteFilesLoaded = false;

/**
 * The release files this process uses: the hub config's `terminology` block, each overridden by its
 * environment variable (YILIAN_WHO_MAP_ONE, YILIAN_WHO_MAP_MULTIPLE, YILIAN_ICD11_TABULATION_EN /
 * _ZH, YILIAN_LOINC_TABLE). Called when the API, the CLI or a worker starts; the files are read at
 * the first $lookup / $validate-code (or now, with `load`), so a typo in a path fails loudly there.
 */
export function useSiteTerminologyFiles(files: SiteTerminologyFiles | undefined, env: NodeJS.ProcessEnv = process.env, load = false): SiteTerminologyFiles {
  siteFiles = {
    ...(env.YILIAN_WHO_MAP_ONE ?? files?.whoMapOneCategory ? { whoMapOneCategory: env.YILIAN_WHO_MAP_ONE ?? files?.whoMapOneCategory } : {}),
    ...(env.YILIAN_WHO_MAP_MULTIPLE ?? files?.whoMapMultipleCategories ? { whoMapMultipleCategories: env.YILIAN_WHO_MAP_MULTIPLE ?? files?.whoMapMultipleCategories } : {}),
    icd11Tabulation: { en: env.YILIAN_ICD11_TABULATION_EN ?? files?.icd11Tabulation?.en, zh: env.YILIAN_ICD11_TABULATION_ZH ?? files?.icd11Tabulation?.zh },
    ...(env.YILIAN_LOINC_TABLE ?? files?.loincTable ? { loincTable: env.YILIAN_LOINC_TABLE ?? files?.loincTable } : {}),
  };
  siteFilesLoaded = false;
  if (load) loadSiteFiles();
  return siteFiles;
}

/** The WHO map files configured for this process (`yilian mappings build` reads them). */
export function configuredWhoMapFiles(): { oneCategory?: string; multipleCategories?: string } {
  return { oneCategory: siteFiles.whoMapOneCategory ?? process.env.YILIAN_WHO_MAP_ONE, multipleCategories: siteFiles.whoMapMultipleCategories ?? process.env.YILIAN_WHO_MAP_MULTIPLE };
}

function loadSiteFiles(): void {
  if (siteFilesLoaded) return;
  siteFilesLoaded = true;
  // Without a configure call (a library user, a test) the environment alone names the files.
  const files = Object.keys(siteFiles).length ? siteFiles : useSiteTerminologyFiles(undefined);
  siteFilesLoaded = true;
  if (files.loincTable) loadLoincTable(files.loincTable);
  if (files.icd11Tabulation?.en) loadIcd11Tabulation(files.icd11Tabulation.en, 'en');
  if (files.icd11Tabulation?.zh) loadIcd11Tabulation(files.icd11Tabulation.zh, 'zh');
}

function codesUsed(terminology: Terminology, system: string): Set<string> {
  const out = new Set<string>();
  for (const map of terminology.maps.values()) for (const g of map.group) {
    if (g.target === system) for (const e of g.element) for (const t of e.target ?? []) if (t.code) out.add(t.code);
    if (g.source === system) for (const e of g.element) out.add(e.code);
  }
  return out;
}

const usedCache = new WeakMap<Terminology, Map<string, Set<string>>>();
function used(terminology: Terminology, system: string): Set<string> {
  let bySystem = usedCache.get(terminology);
  if (!bySystem) usedCache.set(terminology, (bySystem = new Map()));
  let set = bySystem.get(system);
  if (!set) bySystem.set(system, (set = codesUsed(terminology, system)));
  return set;
}

function sourceDisplay(terminology: Terminology, system: string, code: string): string | undefined {
  for (const map of terminology.maps.values()) for (const g of map.group) if (g.source === system) {
    const e = g.element.find((x) => x.code === code);
    if (e?.display) return e.display;
  }
  return undefined;
}

/** What the hub knows about a code. */
export function describeCode(terminology: Terminology, system: string, code: string): CodeInfo {
  loadSiteFiles();
  switch (system) {
    case ICD10: {
      if (!isIcd10Code(code)) return { name: 'ICD-10', valid: false, message: `"${code}" is not ICD-10 code syntax (letter, two digits, optional .digit)` };
      const known = used(terminology, ICD10).has(code);
      return { name: 'ICD-10', valid: true, display: sourceDisplay(terminology, ICD10, code), parent: icd10Parent(code), ...(known ? {} : { message: 'valid syntax; not in the loaded ICD-10 data' }) };
    }
    case ICD10_CN: {
      const reduced = isIcd10Code(code) ? { icd10: code, refines: false } : reduceClinicalEdition(code);
      if (!reduced) return { name: 'ICD-10 China clinical edition', valid: false, message: `"${code}" is not clinical-edition code syntax (e.g. J18.900, I10.x00, I10.x00x002)` };
      return { name: 'ICD-10 China clinical edition', valid: true, parent: reduced.icd10, message: `refines ICD-10 ${reduced.icd10}` };
    }
    case ICD11_MMS: {
      // An extension code on its own is a code of the classification (chapter X), though never an
      // expression by itself: $lookup and $validate-code accept it; the pipeline's maps cannot target it.
      const alone = isIcd11Extension(code);
      const parsed = alone ? ({ ok: true, clusters: [], codes: [code] } as const) : parseIcd11(code);
      if (!parsed.ok) return { name: 'ICD-11 MMS', valid: false, message: parsed.reason };
      const inMaps = used(terminology, ICD11_MMS).has(code);
      if (!icd11TabulationLoaded()) {
        return { name: 'ICD-11 MMS', valid: true, message: `syntax checked only: no MMS tabulation is loaded (terminology.icd11Tabulation in the hub config), so existence is not checked${inMaps ? '; a loaded map uses this code' : ''}` };
      }
      if (alone && !icd11Tabulation.has(code)) return { name: 'ICD-11 MMS', valid: false, message: `not in the loaded MMS tabulation: extension code ${code}` };
      const missing = parsed.clusters.flatMap((c) => [
        ...(icd11Tabulation.has(c.stem) ? [] : [`stem code ${c.stem}`]),
        ...c.extensions.filter((x) => !icd11Tabulation.has(x)).map((x) => `extension code ${x}`),
      ]);
      if (missing.length) return { name: 'ICD-11 MMS', valid: false, message: `not in the loaded MMS tabulation: ${missing.join(', ')}` };
      // A postcoordinated expression reads as its parts' titles: stem & extension / stem.
      const title = (language: 'en' | 'zh'): string | undefined => {
        const parts = (alone ? [[code]] : parsed.clusters.map((c) => [c.stem, ...c.extensions])).map((p) => p.map((x) => icd11Tabulation.get(x)?.[language]));
        if (parts.some((p) => p.some((t) => !t))) return undefined;
        return parts.map((p) => p.join(' & ')).join(' / ');
      };
      const en = title('en');
      const zh = title('zh');
      const single = parsed.codes.length === 1 ? icd11Tabulation.get(code) : undefined;
      return {
        name: 'ICD-11 MMS',
        valid: true,
        ...(en ?? zh ? { display: en ?? zh } : {}),
        ...(zh && en ? { designations: [{ language: 'zh', value: zh }] } : {}),
        ...(single ? { properties: { ...(single.classKind ? { kind: single.classKind } : {}), ...(single.chapter ? { chapter: single.chapter } : {}), ...(single.leaf !== undefined ? { leaf: single.leaf } : {}), ...(single.residual !== undefined ? { residual: single.residual } : {}) } } : {}),
      };
    }
    case LOINC: {
      const concept = loincSubset().find((c) => c.code === code);
      const full = loincTable.get(code);
      if (!concept && full !== undefined) return { name: 'LOINC', valid: true, display: full };
      if (!concept) return { name: 'LOINC', valid: false, message: loincTable.size ? `${code} is not in the loaded LOINC table` : `${code} is not in the LOINC subset the hub ships (load a release: terminology.loincTable in the hub config)` };
      return { name: 'LOINC', valid: true, display: concept.display, ...(concept.zh ? { designations: [{ language: 'zh', value: concept.zh }] } : {}) };
    }
    case UCUM: {
      const v = ucum.validateUnitString(code, false);
      if (v.status !== 'valid') return { name: 'UCUM', valid: false, message: (v.msg ?? []).join('; ') || `"${code}" is not a UCUM unit` };
      return { name: 'UCUM', valid: true, display: v.unit?.name };
    }
    default: {
      if (used(terminology, system).has(code)) return { name: system, valid: true, display: sourceDisplay(terminology, system, code) };
      throw new HubError('not-found', `code system ${system} is not known to this server`, 'system');
    }
  }
}

/** CodeSystem/$lookup → Parameters (name, display, designation, property parent). Unknown code: HubError not-found. */
export function lookup(terminology: Terminology, system: string, code: string): Parameters {
  const info = describeCode(terminology, system, code);
  if (!info.valid) throw new HubError('not-found', `${system}#${code}: ${info.message}`, 'code');
  const parameter: ParametersParameter[] = [{ name: 'name', valueString: info.name }];
  if (info.display) parameter.push({ name: 'display', valueString: info.display });
  for (const d of info.designations ?? []) parameter.push({ name: 'designation', part: [{ name: 'language', valueCode: d.language }, { name: 'value', valueString: d.value }] });
  if (info.parent) parameter.push({ name: 'property', part: [{ name: 'code', valueCode: 'parent' }, { name: 'value', valueCode: info.parent }] });
  for (const [code, value] of Object.entries(info.properties ?? {})) parameter.push({ name: 'property', part: [{ name: 'code', valueCode: code }, typeof value === 'boolean' ? { name: 'value', valueBoolean: value } : { name: 'value', valueString: value }] });
  if (info.message) parameter.push({ name: 'property', part: [{ name: 'code', valueCode: 'note' }, { name: 'value', valueString: info.message }] });
  return { resourceType: 'Parameters', parameter };
}

/** $validate-code → Parameters (result, message, display). */
export function validateCode(terminology: Terminology, system: string, code: string, display?: string): Parameters {
  let info: CodeInfo;
  try {
    info = describeCode(terminology, system, code);
  } catch (error) {
    if (error instanceof HubError && error.code === 'not-found') return { resourceType: 'Parameters', parameter: [{ name: 'result', valueBoolean: false }, { name: 'message', valueString: error.message }] };
    throw error;
  }
  let valid = info.valid;
  let message = info.message;
  if (info.valid && display && info.display && display !== info.display && !info.designations?.some((d) => d.value === display)) {
    valid = false;
    message = `display "${display}" does not match "${info.display}"`;
  }
  const parameter: ParametersParameter[] = [{ name: 'result', valueBoolean: valid }];
  if (message) parameter.push({ name: 'message', valueString: message });
  if (info.display) parameter.push({ name: 'display', valueString: info.display });
  return { resourceType: 'Parameters', parameter };
}

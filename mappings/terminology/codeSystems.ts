/**
 * CodeSystem/$lookup and $validate-code over the systems the hub knows: ICD-10 and its China
 * clinical edition (syntax, and the ICD-10 parent), ICD-11 MMS (expression syntax; existence and
 * titles when a tabulation is loaded, else codes the maps use), the shipped LOINC subset (with
 * Chinese designations) and UCUM (any valid unit expression). Answers are FHIR R4 `Parameters`.
 */
import { readFileSync } from 'node:fs';
import { UcumLhcUtils } from '@lhncbc/ucum-lhc';
import { HubError } from '../../pipeline/outcome';
import { parseIcd11 } from './icd11';
import { isIcd10Code, reduceClinicalEdition, icd10Parent } from './icd10';
import { loincSubset } from './store';
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
}

/** ICD-11 titles from an MMS tabulation (code → { en, zh }), loaded by `loadIcd11Tabulation`. */
const icd11Titles = new Map<string, { en?: string; zh?: string }>();

/**
 * Load titles from the WHO MMS tabulation (`LinearizationMiniOutput-MMS-<lang>.txt`, tab-separated
 * with Code and Title columns); `language` says which title it holds. Returns the codes read.
 */
export function loadIcd11Tabulation(file: string, language: 'en' | 'zh'): number {
  const lines = readFileSync(file, 'utf8').replace(/^\uFEFF/, '').split(/\r?\n/);
  const header = lines[0]!.split('\t').map((h) => h.trim().toLowerCase());
  const code = header.indexOf('code');
  const title = header.indexOf('title');
  if (code < 0 || title < 0) throw new HubError('invalid', `${file}: needs Code and Title columns`, file);
  let n = 0;
  for (const line of lines.slice(1)) {
    const cells = line.split('\t');
    const c = cells[code]?.trim();
    if (!c) continue;
    const t = (cells[title] ?? '').replace(/^[-\s]+/, '').trim();
    icd11Titles.set(c, { ...icd11Titles.get(c), [language]: t });
    n++;
  }
  return n;
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

let siteFilesLoaded = false;
/**
 * Release files a site has, named by environment (like DATABASE_URL): YILIAN_LOINC_TABLE (Loinc.csv),
 * YILIAN_ICD11_TABULATION_EN / _ZH (MMS tabulation). Loaded once, on first lookup.
 */
function loadSiteFiles(): void {
  if (siteFilesLoaded) return;
  siteFilesLoaded = true;
  if (process.env.YILIAN_LOINC_TABLE) loadLoincTable(process.env.YILIAN_LOINC_TABLE);
  if (process.env.YILIAN_ICD11_TABULATION_EN) loadIcd11Tabulation(process.env.YILIAN_ICD11_TABULATION_EN, 'en');
  if (process.env.YILIAN_ICD11_TABULATION_ZH) loadIcd11Tabulation(process.env.YILIAN_ICD11_TABULATION_ZH, 'zh');
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
      const parsed = parseIcd11(code);
      if (!parsed.ok) return { name: 'ICD-11 MMS', valid: false, message: parsed.reason };
      const titles = parsed.clusters.length === 1 && parsed.clusters[0]!.extensions.length === 0 ? icd11Titles.get(code) : undefined;
      const loaded = icd11Titles.size > 0;
      if (loaded) {
        const missing = parsed.codes.filter((c) => !icd11Titles.has(c));
        if (missing.length) return { name: 'ICD-11 MMS', valid: false, message: `not in the loaded MMS tabulation: ${missing.join(', ')}` };
      }
      const designations = titles?.zh ? [{ language: 'zh', value: titles.zh }] : undefined;
      const inMaps = used(terminology, ICD11_MMS).has(code);
      return {
        name: 'ICD-11 MMS',
        valid: true,
        ...(titles?.en ?? titles?.zh ? { display: titles?.en ?? titles?.zh } : {}),
        ...(designations ? { designations } : {}),
        ...(loaded || inMaps ? {} : { message: 'valid syntax; no MMS tabulation loaded to check existence' }),
      };
    }
    case LOINC: {
      const concept = loincSubset().find((c) => c.code === code);
      const full = loincTable.get(code);
      if (!concept && full !== undefined) return { name: 'LOINC', valid: true, display: full };
      if (!concept) return { name: 'LOINC', valid: false, message: loincTable.size ? `${code} is not in the loaded LOINC table` : `${code} is not in the LOINC subset the hub ships (load a release with YILIAN_LOINC_TABLE)` };
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

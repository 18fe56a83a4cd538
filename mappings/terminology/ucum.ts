/**
 * UCUM through @lhncbc/ucum-lhc (the NLM's reference implementation): validation, unit strings as
 * LIS systems write them (`μmol/L`, `10^9/L`, `g/dl`) normalised to UCUM codes, and conversion
 * including mass ↔ substance concentration with a molar mass. Conversion factors are computed once
 * per (from, to, molar mass) and cached, so the pipeline pays a multiplication per value. Units that
 * are not commensurable are refused with a reason, never guessed.
 */
import { UcumLhcUtils } from '@lhncbc/ucum-lhc';

const utils = UcumLhcUtils.getInstance();

/** Spellings seen from LIS systems → UCUM code (exact match on the trimmed string). */
const COMMON_SPELLINGS: Readonly<Record<string, string>> = {
  '%': '%',
  'g/dl': 'g/dL',
  'mg/dl': 'mg/dL',
  'g/l': 'g/L',
  'mmol/l': 'mmol/L',
  'umol/l': 'umol/L',
  'u/l': 'U/L',
  'iu/l': '[IU]/L',
  'fl': 'fL',
  'pg': 'pg',
  'mmhg': 'mm[Hg]',
  '×10^9/l': '10*9/L',
  'x10^9/l': '10*9/L',
  '10^9/l': '10*9/L',
  '10e9/l': '10*9/L',
  '×10^12/l': '10*12/L',
  'x10^12/l': '10*12/L',
  '10^12/l': '10*12/L',
  '10e12/l': '10*12/L',
};

export type UnitResolution = { ok: true; code: string } | { ok: false; reason: string };

const resolved = new Map<string, UnitResolution>();

/** A unit as sent → its UCUM code. Case-sensitive UCUM first, then known spellings (μ/µ → u, ^ → *, ×10). */
export function resolveUnit(unit: string): UnitResolution {
  const cached = resolved.get(unit);
  if (cached) return cached;
  const result = resolveUncached(unit);
  if (resolved.size < 10_000) resolved.set(unit, result);
  return result;
}

function resolveUncached(unit: string): UnitResolution {
  const trimmed = unit.trim();
  if (trimmed === '') return { ok: false, reason: 'no unit' };
  // Known spellings first: `10^9/L` is valid UCUM too, but `10*9/L` is the form the maps use.
  const known = COMMON_SPELLINGS[trimmed.toLowerCase().replace(/[μµ]/g, 'u')];
  if (known) return { ok: true, code: known };
  const direct = utils.validateUnitString(trimmed, false);
  if (direct.status === 'valid' && direct.ucumCode) return { ok: true, code: direct.ucumCode };
  const rewritten = trimmed.replace(/[μµ]/g, 'u').replace(/[×x]\s*10\^?/g, '10*').replace(/10\^/g, '10*');
  const second = utils.validateUnitString(rewritten, false);
  if (second.status === 'valid' && second.ucumCode) return { ok: true, code: second.ucumCode };
  return { ok: false, reason: `"${unit}" is not a UCUM unit${direct.msg?.length ? ` (${direct.msg[0]})` : ''}` };
}

export type Conversion = { ok: true; convert: (value: number) => number; factor?: number } | { ok: false; reason: string };

const conversions = new Map<string, Conversion>();

/**
 * How to convert values from one UCUM unit to another. `molarMass` (g/mol) allows mass ↔ amount of
 * substance (mg/dL → mmol/L for glucose). Linear conversions become a cached factor.
 */
export function unitConversion(from: string, to: string, molarMass?: number): Conversion {
  const key = `${from}\u0000${to}\u0000${molarMass ?? ''}`;
  const cached = conversions.get(key);
  if (cached) return cached;
  const conversion = conversionUncached(from, to, molarMass);
  conversions.set(key, conversion);
  return conversion;
}

function conversionUncached(from: string, to: string, molarMass?: number): Conversion {
  if (from === to) return { ok: true, convert: (v) => v, factor: 1 };
  const options = molarMass ? { molecularWeight: molarMass } : {};
  const one = utils.convertUnitTo(from, 1, to, options);
  if (one.status !== 'succeeded' || typeof one.toVal !== 'number') {
    return { ok: false, reason: `cannot convert ${from} to ${to}: ${(one.msg ?? []).join('; ') || 'units are not commensurable'}` };
  }
  const special = (one.fromUnit as { isSpecial_?: boolean } | undefined)?.isSpecial_ || (one.toUnit as { isSpecial_?: boolean } | undefined)?.isSpecial_;
  if (special) {
    // Non-linear units (Cel, [pH]): ask the library for every value.
    return {
      ok: true,
      convert: (v) => {
        const r = utils.convertUnitTo(from, v, to, options);
        return r.toVal as number;
      },
    };
  }
  const factor = one.toVal;
  return { ok: true, convert: (v) => v * factor, factor };
}

/** Round a converted value to a sensible number of significant digits (float noise such as 134.99999999). */
export function roundConverted(value: number, significant = 6): number {
  if (value === 0 || !Number.isFinite(value)) return value;
  return Number(value.toPrecision(significant));
}

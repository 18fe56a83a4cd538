/**
 * Configuration of mutual recognition (the `recognition` key of the hub configuration,
 * hub/config.ts): which labs hold a valid external-quality-assessment accreditation, and each
 * member's price list. Both are configuration because they come from outside the hub (the EQA
 * body's certificates, the members' finance departments) and change on dates: every entry carries
 * its validity, so a result is judged by the accreditation in force when it was produced and a
 * repeat is priced by the list in force when it was done. Imports only zod (the config module
 * imports this one).
 */
import { z } from 'zod';

const isoDate = z.string().regex(/^\d{4}-\d{2}-\d{2}(T.*)?$/, 'an ISO date such as 2026-01-01');

/**
 * A lab's accreditation: passing external quality assessment (室间质评, e.g. the national NCCL
 * scheme) for some tests, valid from/to. `lab` absent: the member's whole laboratory. `codes`
 * empty: every test.
 */
export const accreditationSchema = z
  .object({
    member: z.string().min(1),
    /** A lab inside the member (Observation.performer display or reference); absent: all of the member. */
    lab: z.string().min(1).optional(),
    /** Who assessed it, e.g. `NCCL-EQA` or a provincial centre for clinical laboratories. */
    scheme: z.string().min(1).default('EQA'),
    /** Standard codes covered; empty: every test. */
    codes: z.array(z.string().min(1)).default([]),
    validFrom: isoDate,
    /** Inclusive day (or instant); absent: open-ended. */
    validTo: isoDate.optional(),
  })
  .strict();

/** One version of a member's price list: standard code → price, in force from/to. */
export const priceListSchema = z
  .object({
    member: z.string().min(1),
    /** The finance department's version label, e.g. `2026-01`. */
    version: z.string().min(1),
    currency: z.string().min(3).max(3).default('CNY'),
    effectiveFrom: isoDate,
    /** Exclusive; absent: until a later version starts. */
    effectiveTo: isoDate.optional(),
    prices: z.record(z.string().min(1), z.number().nonnegative()),
  })
  .strict();

export const recognitionConfigSchema = z
  .object({
    accreditation: z.array(accreditationSchema).default([]),
    priceLists: z.array(priceListSchema).default([]),
    /** Currency of the report totals (price lists in another currency are refused at load). */
    currency: z.string().min(3).max(3).default('CNY'),
  })
  .strict()
  .superRefine((c, ctx) => {
    c.priceLists.forEach((p, i) => {
      if (p.currency !== c.currency) ctx.addIssue({ code: 'custom', path: ['priceLists', i, 'currency'], message: `price lists must be in ${c.currency}` });
    });
  });

export type RecognitionConfig = z.infer<typeof recognitionConfigSchema>;
export type Accreditation = z.infer<typeof accreditationSchema>;
export type PriceList = z.infer<typeof priceListSchema>;

/** Start of a date-only bound (UTC midnight) or the instant given. */
function startOf(value: string): number {
  return Date.parse(value.length === 10 ? `${value}T00:00:00Z` : value);
}

/** End of an inclusive date-only bound (next UTC midnight) or the instant given. */
function endOfInclusive(value: string): number {
  return value.length === 10 ? startOf(value) + 86_400_000 : Date.parse(value);
}

/** Does an accreditation cover this result (member, lab, code, at the time it was produced)? */
export function accreditationFor(config: RecognitionConfig, member: string, lab: string | null, code: string, at: Date): Accreditation | undefined {
  const t = at.getTime();
  return config.accreditation.find(
    (a) =>
      a.member === member &&
      (!a.lab || a.lab === lab) &&
      (a.codes.length === 0 || a.codes.includes(code)) &&
      startOf(a.validFrom) <= t &&
      (!a.validTo || t < endOfInclusive(a.validTo)),
  );
}

/** The price of a code at a member at a time (the list in force then with the latest start), 0 if none. */
export function priceAt(config: RecognitionConfig, member: string, code: string, at: Date): number {
  const t = at.getTime();
  let best: PriceList | undefined;
  for (const list of config.priceLists) {
    if (list.member !== member || startOf(list.effectiveFrom) > t || (list.effectiveTo && t >= startOf(list.effectiveTo))) continue;
    if (!best || startOf(list.effectiveFrom) > startOf(best.effectiveFrom)) best = list;
  }
  return best?.prices[code] ?? 0;
}

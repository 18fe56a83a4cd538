/**
 * The options a member may give the HL7 v2 → FHIR conversion, declared here beside the code that
 * reads them; the hub's configuration (hub/config.ts) composes its member schema from this one.
 */
import { z } from 'zod';
import { fieldDataTypes, segmentMaps } from './segments';

/**
 * Per-member HL7 v2 → FHIR conversion overrides, applied on top of the shared segment maps
 * (mappings/hl7v2/segments.ts `withOverrides`).
 * - residentIdField: the PID field holding the 居民身份证号 (e.g. 19) → Patient.identifier with the
 *   resident-ID system; replaces the default mapping of that field.
 * - overrides: `{ segment, field, type, to }` replaces every rule for segment-field with "read it as
 *   `type`, put it at path `to`" (`to: null` stops converting that field). `system` and
 *   `identifierType` go with type ST-Identifier. Example: `{ "segment": "PID", "field": 20,
 *   "type": "ST-Identifier", "to": "identifier[]", "system": "urn:oid:…" }`.
 */
export const conversionOptionsSchema = z.object({
  residentIdField: z.number().int().min(1).max(40).optional(),
  overrides: z
    .array(
      z
        .object({
          segment: z.string().refine((s) => s in segmentMaps, { message: `a mapped segment: ${Object.keys(segmentMaps).join(', ')}` }),
          field: z.number().int().min(1).max(999),
          type: z.enum(fieldDataTypes).optional(),
          to: z
            .string()
            .regex(/^[a-zA-Z]+(\[\])?(\.[a-zA-Z]+(\[\])?)*$/, 'a path like identifier[] or name[].text')
            .nullable(),
          repeat: z.boolean().optional(),
          system: z.string().min(1).optional(),
          identifierType: z.string().min(1).optional(),
        })
        .refine((o) => o.to === null || o.type !== undefined, { message: 'type is required unless to is null' }),
    )
    .default([]),
});

export type ConversionOptions = z.infer<typeof conversionOptionsSchema>;

/**
 * The member's own names for standard coding systems (CWE-3 values) → system URI, e.g.
 * `{ "ICD10-CN": "urn:yilian:icd-10-cn", "GB-ICD10": "http://hl7.org/fhir/sid/icd-10" }`. Without
 * an alias an unknown name is a local system `urn:yilian:<member>:<name>` (systems.ts). Declared
 * here beside the translation that reads it; hub/config.ts composes it into the member schema.
 */
import { z } from 'zod';

export const codingSystemAliasesSchema = z.record(z.string().min(1), z.string().regex(/^(https?:\/\/|urn:)\S+$/, 'a code system URI'));

/**
 * What an API key, a JWT or a console role may do. `governance`: the data-governance committee —
 * propose, approve, reject and retire mappings and recognition rules, and run their impact dry runs
 * and reprocessing. `feed.read`: cost systems — the cost event feed and nothing else.
 */
import { z } from 'zod';

export const scopeSchema = z.enum(['admin', 'integration', 'governance', 'patient.read', 'feed.read', 'metrics']);

export type Scope = z.infer<typeof scopeSchema>;

/**
 * Request input validation shared by every route module (api/server.ts, api/console/api.ts,
 * api/terminology.ts): a zod schema or a 400 that names the field.
 */
import { z } from 'zod';
import { HubError } from '../mappings/outcome';

/** Parse `value` with `schema`; a failure is HubError `invalid` located at `where.path`. */
export function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw new HubError('invalid', `${where}${issue.path.length ? '.' + issue.path.join('.') : ''}: ${issue.message}`, where);
  }
  return result.data;
}

/** A numeric `:id` route parameter. */
export const idParam = z.object({ id: z.coerce.number().int().positive() });

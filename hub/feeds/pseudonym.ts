/**
 * The pseudonymous patient key of the cost feed: HMAC-SHA256 of the golden patient id under a
 * secret only the hub holds. The same person gets the same key at every member and in every event
 * (so costs can be followed per patient), a cost system cannot recompute it from an identity it
 * knows, and changing the secret makes every earlier key unlinkable. Owns reading the secret; the
 * secret is never logged, printed or stored in the database.
 *
 * Where the secret comes from (hub/config.ts `feeds.cost`): the environment variable named by
 * `pseudonymKeyEnv` (default YILIAN_FEED_PSEUDONYM_KEY), else the file `pseudonymKeyFile`. With
 * neither, only the embedded demo store (PGlite) gets one: a random key created once in its data
 * directory (mode 0600). A PostgreSQL hub without a configured secret refuses to build the feed.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { HubConfig } from '../config';
import { HubError } from '../../mappings/outcome';

const MIN_KEY_BYTES = 16;

export type Pseudonymiser = (goldenId: string) => string;

export function pseudonymiser(key: Buffer): Pseudonymiser {
  return (goldenId) => createHmac('sha256', key).update(goldenId, 'utf8').digest('hex');
}

/** The feed secret from configuration (never logged); `embedded` allows the demo's generated key. */
export function feedSecret(config: HubConfig, options: { env?: NodeJS.ProcessEnv; embedded?: boolean } = {}): Buffer {
  const env = options.env ?? process.env;
  const feed = config.feeds.cost;
  const fromEnv = env[feed.pseudonymKeyEnv];
  let key: string | undefined = fromEnv;
  if (!key && feed.pseudonymKeyFile) {
    try {
      key = readFileSync(feed.pseudonymKeyFile, 'utf8').trim();
    } catch (error) {
      throw new HubError('invalid', `cannot read feeds.cost.pseudonymKeyFile: ${(error as NodeJS.ErrnoException).code ?? 'error'}`, 'feeds.cost.pseudonymKeyFile');
    }
  }
  if (!key && options.embedded) {
    const file = path.join(config.dataDir, 'feed-pseudonym.key');
    if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600, flag: 'wx' });
    key = readFileSync(file, 'utf8').trim();
  }
  if (!key) throw new HubError('invalid', `the cost feed needs a pseudonym secret: set ${feed.pseudonymKeyEnv} (or feeds.cost.pseudonymKeyFile)`, 'feeds.cost');
  const bytes = Buffer.from(key, 'utf8');
  if (bytes.length < MIN_KEY_BYTES) throw new HubError('invalid', `the cost feed pseudonym secret must be at least ${MIN_KEY_BYTES} bytes`, 'feeds.cost');
  return bytes;
}

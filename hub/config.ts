/**
 * Configuration: one file (JSON or YAML), validated with zod. Members, their channels, where Redis
 * and PostgreSQL are, API keys, pipeline sizing. Configuration is data that can be versioned and
 * audited, never code. A bad file is refused with the path of the first bad field.
 */
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { Charset, charsetFromName, supportedCharsetNames } from '../mappings/hl7v2/charset';
import type { CharsetPolicy } from '../mappings/hl7v2/header';
import { HubError } from '../mappings/outcome';
import { conversionOptionsSchema } from '../mappings/hl7v2/options';
import { codingSystemAliasesSchema } from '../mappings/terminology/aliases';
import { consoleConfigSchema } from './console/config';
import { scopeSchema } from './scopes';
import { recognitionConfigSchema } from './recognition/config';
import { identityConfigSchema, useIdentityConfig } from './mpi/identity';
import { clusterTarget, prefixProblem } from './redis';

const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'letters, digits, _ . - (at most 64)');

const charset = z
  .string()
  .refine((name) => charsetFromName(name) !== undefined, { message: `unknown charset; use one of ${supportedCharsetNames.join(', ')}` })
  .transform((name) => charsetFromName(name) as Charset);

/** UTC offset of the member's clocks, for HL7 times sent without one. */
const utcOffset = z.string().regex(/^[+-]\d{2}:\d{2}$/, 'like +08:00').default('+08:00');

const charsetOptions = {
  /** Charset when MSH-18 is empty. Chinese HIS exports without MSH-18 are usually GB18030: set it per channel. */
  charset: charset.default('UTF-8'),
  /** Ignore MSH-18 and always decode with this: for senders that declare the wrong charset. */
  forceCharset: charset.optional(),
};

export const mllpChannelSchema = z.object({
  id,
  kind: z.literal('mllp'),
  host: z.string().default('0.0.0.0'),
  port: z.number().int().min(0).max(65535),
  ...charsetOptions,
  /** original: AA/AE/AR always. enhanced: commit ACKs per MSH-15. auto: enhanced when MSH-15/16 are valued. */
  ackMode: z.enum(['original', 'enhanced', 'auto']).default('original'),
  /** Larger frames are answered AR (HL7 error 104) and their first bytes quarantined. */
  maxMessageBytes: z.number().int().positive().default(16 * 1024 * 1024),
  /** Close a connection silent for this long. */
  idleTimeoutMs: z.number().int().positive().default(300_000),
});

export const fileChannelSchema = z.object({
  id,
  kind: z.literal('file'),
  dir: z.string().min(1),
  /** Glob on the file name: `*` and `?` only. */
  pattern: z.string().default('*.hl7'),
  /** Where processed files go; default `<dir>/archive`. */
  archiveDir: z.string().optional(),
  /** Where failed files go with a `.reason.txt`; default `<dir>/error`. */
  errorDir: z.string().optional(),
  pollIntervalMs: z.number().int().positive().default(1000),
  /** A file is read only once its size and mtime stayed the same this long (half-written files are never read). */
  stableMs: z.number().int().nonnegative().default(1000),
  /** Larger files are never read into memory: their first bytes are quarantined (`too-large`) and the file goes to the error folder. */
  maxFileBytes: z.number().int().positive().default(16 * 1024 * 1024),
  /**
   * A stable file that looks cut off (no segment terminator at its end, FHS without FTS, BHS without
   * BTS, BTS/FTS counts that disagree) waits this long for its writer; then its bytes are quarantined
   * (`incomplete`) and it goes to the error folder.
   */
  incompleteGraceMs: z.number().int().nonnegative().default(60_000),
  /** Read a symbolic link matching the pattern (the link is what moves to the archive); otherwise it is logged and skipped. */
  followSymlinks: z.boolean().default(false),
  ...charsetOptions,
});

/**
 * How the hub authenticates to a member's FHIR server (adapters/fhir/auth.ts). Secrets are named by
 * environment variable (`…Env`) or file, so configuration files kept in git hold none.
 */
export const fhirAuthSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('none') }),
  z.object({ type: z.literal('basic'), username: z.string().min(1), passwordEnv: z.string().min(1) }),
  z.object({ type: z.literal('bearer'), tokenEnv: z.string().min(1) }),
  z.object({
    /** SMART Backend Services: client-credentials grant with a signed JWT assertion. */
    type: z.literal('smart-backend'),
    clientId: z.string().min(1),
    /** Token endpoint; default: token_endpoint of <baseUrl>/.well-known/smart-configuration. */
    tokenUrl: z.url().optional(),
    scope: z.string().default('system/*.read'),
    alg: z.enum(['RS384', 'ES384']).default('RS384'),
    /** Key id registered with the server (JWT header `kid`). */
    kid: z.string().optional(),
    /** PEM private key: a file path, or the name of an environment variable holding it. */
    privateKeyPath: z.string().optional(),
    privateKeyEnv: z.string().optional(),
  }).refine((a) => !!a.privateKeyPath !== !!a.privateKeyEnv, { message: 'give exactly one of privateKeyPath or privateKeyEnv' }),
]);

const fhirResourceType = z.string().regex(/^[A-Z][A-Za-z]{1,63}$/, 'a FHIR resource type such as Patient');

/** Shared by the FHIR channel kinds: where the server is and how to talk to it. */
const fhirServerOptions = {
  baseUrl: z.url().transform((u) => u.replace(/\/+$/, '')),
  auth: fhirAuthSchema.default({ type: 'none' }),
  /** Per HTTP request; a request that takes longer is retried like a 5xx. */
  timeoutMs: z.number().int().positive().default(30_000),
  /** Attempts per request for 429, 5xx, timeouts and network errors (Retry-After is honoured). */
  maxAttempts: z.number().int().min(1).max(20).default(6),
  /** First backoff delay when the server gives no Retry-After; doubles each attempt (capped at 60 s). */
  backoffMs: z.number().int().positive().default(500),
};

/** Incremental REST pull (adapters/fhir/restPull.ts): search by _lastUpdated per resource type, page by the Bundle next link. */
export const fhirRestChannelSchema = z.object({
  id,
  kind: z.literal('fhir-rest'),
  ...fhirServerOptions,
  resourceTypes: z.array(fhirResourceType).min(1),
  /** Extra search parameters per resource type (e.g. `{ "Observation": { "category": "laboratory" } }`). */
  searchParams: z.record(z.string(), z.record(z.string(), z.string())).default({}),
  /** _count asked for per page. */
  pageSize: z.number().int().min(1).max(1000).default(100),
  /** Seconds between pulls for `yilian serve`; absent: pulled only by `yilian pull`. */
  intervalSeconds: z.number().int().positive().optional(),
});

/** Bulk Data $export import (adapters/fhir/bulk.ts). */
export const fhirBulkChannelSchema = z.object({
  id,
  kind: z.literal('fhir-bulk'),
  ...fhirServerOptions,
  level: z.enum(['system', 'patient', 'group']).default('system'),
  groupId: z.string().optional(),
  resourceTypes: z.array(fhirResourceType).default([]),
  /** Longest wait for the export to finish. */
  exportTimeoutMs: z.number().int().positive().default(6 * 3600_000),
  /** Resources stored per raw-store transaction while reading an NDJSON file. */
  batchSize: z.number().int().min(1).max(5000).default(500),
});

/** Push: rest-hook notifications (R4 Subscription, R4B/R5 topic-based notification bundles), api/server.ts. */
export const fhirSubscriptionChannelSchema = z.object({
  id,
  kind: z.literal('fhir-subscription'),
  /** The source server's base URL (provenance and hub ids); the same as its fhir-rest channel's, if it has one. */
  baseUrl: z.url().transform((u) => u.replace(/\/+$/, '')),
  /** sha256 (hex) of the bearer token the member's server sends (Subscription.channel.header). */
  tokenSha256: z.string().regex(/^[0-9a-f]{64}$/),
});

export const fhirChannelSchema = z.discriminatedUnion('kind', [fhirRestChannelSchema, fhirBulkChannelSchema, fhirSubscriptionChannelSchema]);

export const channelSchema = z.discriminatedUnion('kind', [mllpChannelSchema, fileChannelSchema, fhirRestChannelSchema, fhirBulkChannelSchema, fhirSubscriptionChannelSchema]);

export const memberSchema = z.object({
  id,
  name: z.string().min(1),
  tier: z.enum(['tertiary', 'secondary', 'primary', 'unknown']),
  utcOffset,
  channels: z.array(channelSchema).default([]),
  conversion: conversionOptionsSchema.optional(),
  codingSystemAliases: codingSystemAliasesSchema.optional(),
});


export const apiKeySchema = z
  .object({
    name: z.string().min(1),
    /** The key itself, or its sha256 in hex (prefer the hash in files kept in git). */
    key: z.string().min(16).optional(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
    scopes: z.array(scopeSchema).min(1),
  })
  .refine((k) => !!k.key !== !!k.sha256, { message: 'give exactly one of key or sha256' });

/**
 * JWT bearer tokens (api/jwt.ts): who may issue them and with which keys. The algorithm is set
 * by the key (HS256 secret, RS256 / ES256 public keys), never by the token. The HS256 secret is
 * never written here: name the environment variable holding it, or a file (mode 0600).
 */
export const jwtSchema = z
  .object({
    /** `iss` must equal this. */
    issuer: z.string().min(1),
    /** `aud` (a string or an array) must contain this. */
    audience: z.string().min(1),
    /** Environment variable holding the HS256 shared secret (at least 32 bytes). */
    hs256SecretEnv: z.string().min(1).optional(),
    /** Else a file holding it. */
    hs256SecretFile: z.string().min(1).optional(),
    /** RS256 (RSA) or ES256 (P-256) public keys as PEM (SPKI); `kid` picks one when tokens name it. */
    publicKeys: z.array(z.object({ kid: z.string().min(1).optional(), alg: z.enum(['RS256', 'ES256']), pem: z.string().includes('-----BEGIN PUBLIC KEY-----') })).default([]),
    /** A JWKS file (the provider's `jwks_uri` document, saved): its RSA and P-256 signing keys. */
    jwksFile: z.string().min(1).optional(),
    /** Tolerance on exp and nbf. */
    clockSkewSeconds: z.number().int().min(0).max(300).default(60),
    /** Provider scope → our scope (e.g. `"hub/patient.read": "patient.read"`); our own names are accepted as they are. */
    scopeMap: z.record(z.string().min(1), scopeSchema).default({}),
  })
  .refine((j) => !!(j.hs256SecretEnv || j.hs256SecretFile || j.publicKeys.length || j.jwksFile), { message: 'give a key: hs256SecretEnv, hs256SecretFile, publicKeys or jwksFile' });

function validRedisUrl(url: string, ctx: z.RefinementCtx): void {
  try {
    clusterTarget(url);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
  }
}

/** A cluster's queue prefix must hold a hash tag; checked after REDIS_URL may have named a cluster. */
function checkRedisPrefix(config: HubConfig): HubConfig {
  const problem = config.redisUrl && prefixProblem(config.redisUrl, config.pipeline.queuePrefix);
  if (problem) throw new HubError('invalid', `pipeline.queuePrefix: ${problem}`, 'pipeline.queuePrefix');
  return config;
}

export const configSchema = z
  .object({
    members: z.array(memberSchema).default([]),
    /**
     * Overridden by REDIS_URL. A single Redis (`redis://…`, `rediss://…`, a socket path) or a Redis
     * Cluster, `redis+cluster://host:port,host:port,…` (then pipeline.queuePrefix needs a hash tag:
     * hub/redis.ts, docs/scaling.md). Unset: the embedded redis-server the CLI starts (demo only).
     */
    redisUrl: z.string().min(1).superRefine(validRedisUrl).optional(),
    /** Overridden by DATABASE_URL. Unset: embedded PGlite in dataDir (demo only: no fsync). */
    databaseUrl: z.string().optional(),
    /** Embedded PGlite data and the embedded Redis socket live here. */
    dataDir: z.string().default('.yilian'),
    api: z
      .object({
        host: z.string().default('0.0.0.0'),
        port: z.number().int().min(0).max(65535).default(8080),
        keys: z.array(apiKeySchema).default([]),
        /** JWT bearer tokens from an identity provider, accepted next to the keys (api/jwt.ts). Absent: API keys only. */
        jwt: jwtSchema.optional(),
      })
      .prefault({}),
    /** The operations console: users (role, scrypt hash), session length, channel alert thresholds (hub/console/config.ts). Absent: defaults, no users. */
    console: consoleConfigSchema.optional(),
    /**
     * Identity systems for the patient index (hub/mpi/identity.ts, docs/mpi.md): which member
     * authority and identifier type is which system (passport of a country, travel permit, SSN,
     * medical insurance number…) over the built-in reading of table 0203, the site's own systems,
     * and each member's country for phone numbers. Set for the process when the configuration is parsed.
     */
    identity: identityConfigSchema.prefault({}),
    /** Mutual recognition: labs' external-quality-assessment accreditation and members' versioned price lists (hub/recognition/config.ts, docs/recognition.md). */
    recognition: recognitionConfigSchema.prefault({}),
    /**
     * The cost event feed (hub/feeds, docs/cost-feed.md). The pseudonym secret (HMAC key of the
     * patient key) is never written here: name the environment variable that holds it, or a file.
     */
    feeds: z
      .object({
        cost: z
          .object({
            /** Environment variable holding the pseudonym secret (at least 16 bytes). */
            pseudonymKeyEnv: z.string().min(1).default('YILIAN_FEED_PSEUDONYM_KEY'),
            /** Else a file holding it (mode 0600). */
            pseudonymKeyFile: z.string().min(1).optional(),
            /** Seconds between feed builds in `yilian serve`. */
            intervalSeconds: z.number().int().positive().default(5),
            /** A visit at another member within this many days after one at a member is a referral between them. */
            referralWindowDays: z.number().int().positive().default(30),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /**
     * Official terminology release files the site downloaded (absent: the shipped WHO extract and
     * LOINC subset; docs/terminology.md). Paths relative to the working directory. Loaded once per
     * process (mappings/terminology/codeSystems.ts `useSiteTerminologyFiles`); the environment variables YILIAN_WHO_MAP_ONE,
     * YILIAN_WHO_MAP_MULTIPLE, YILIAN_ICD11_TABULATION_EN / _ZH and YILIAN_LOINC_TABLE override them.
     */
    terminology: z
      .object({
        /** WHO `10To11MapToOneCategory.txt` (tab-separated): the base ICD-10 → ICD-11 map, loaded as a new approved version by `yilian mappings build --import`. */
        whoMapOneCategory: z.string().min(1).optional(),
        /** WHO `10To11MapToMultipleCategories.txt`: merged into the same map (a code with several targets gets each, `narrower`). */
        whoMapMultipleCategories: z.string().min(1).optional(),
        /** The MMS tabulation per language (`SimpleTabulation-ICD-11-MMS-<lang>.txt`, tab-separated; the xlsx saved as text): ICD-11 titles and existence of stem and extension codes. */
        icd11Tabulation: z.object({ en: z.string().min(1).optional(), zh: z.string().min(1).optional() }).strict().optional(),
        /** `Loinc.csv` of a LOINC release: every LOINC code valid for $lookup / $validate-code, with its long common name. */
        loincTable: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
    /** How the data-governance committee decides (docs/terminology.md). */
    governance: z
      .object({
        /**
         * Four eyes: whoever proposed a mapping (or a recognition rule version) cannot approve it.
         * Default true; turn it off only on a one-person hub.
         */
        fourEyes: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    pipeline: z
      .object({
        /** Per-patient order: messages are hashed by member+MRN onto this many ordered queues. Changing it re-routes patients: drain first. */
        partitions: z.number().int().min(1).max(1024).default(16),
        /** BullMQ key prefix; use a hash tag such as `{yilian}` on Redis Cluster. */
        queuePrefix: z.string().default('yilian'),
        /** Attempts for transient failures before a message is dead-lettered. */
        attempts: z.number().int().min(1).default(5),
        /** First retry delay; doubles each attempt. */
        backoffMs: z.number().int().positive().default(1000),
      })
      .prefault({}),
  })
  .superRefine((config, ctx) => {
    const memberIds = new Set<string>();
    const ports = new Map<number, string>();
    config.members.forEach((member, m) => {
      if (memberIds.has(member.id)) ctx.addIssue({ code: 'custom', path: ['members', m, 'id'], message: `duplicate member id ${member.id}` });
      memberIds.add(member.id);
      const channelIds = new Set<string>();
      member.channels.forEach((channel, c) => {
        if (channelIds.has(channel.id)) ctx.addIssue({ code: 'custom', path: ['members', m, 'channels', c, 'id'], message: `duplicate channel id ${channel.id}` });
        channelIds.add(channel.id);
        if (channel.kind === 'mllp' && channel.port !== 0) {
          const owner = ports.get(channel.port);
          if (owner) ctx.addIssue({ code: 'custom', path: ['members', m, 'channels', c, 'port'], message: `port ${channel.port} already used by ${owner}` });
          ports.set(channel.port, `${member.id}/${channel.id}`);
        }
      });
    });
  });

export type HubConfig = z.infer<typeof configSchema>;
export type MemberConfig = z.infer<typeof memberSchema>;
export type ChannelConfig = z.infer<typeof channelSchema>;
export type MllpChannelConfig = z.infer<typeof mllpChannelSchema>;
export type FileChannelConfig = z.infer<typeof fileChannelSchema>;
export type FhirRestChannelConfig = z.infer<typeof fhirRestChannelSchema>;
export type FhirBulkChannelConfig = z.infer<typeof fhirBulkChannelSchema>;
export type FhirSubscriptionChannelConfig = z.infer<typeof fhirSubscriptionChannelSchema>;
export type FhirAuthConfig = z.infer<typeof fhirAuthSchema>;
export type JwtConfig = z.infer<typeof jwtSchema>;

/** Validate a parsed config object; throws HubError('invalid') naming the first bad field's path. */
export function parseConfig(input: unknown): HubConfig {
  const result = configSchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const path = issue.path.map(String).join('.') || '(root)';
    throw new HubError('invalid', `${path}: ${issue.message}`, path);
  }
  useIdentityConfig(result.data.identity);
  return checkRedisPrefix(result.data);
}

export interface LoadOptions {
  /** --config; else YILIAN_CONFIG; else no file (embedded defaults). */
  path?: string;
  env?: NodeJS.ProcessEnv;
}

export function loadConfig(options: LoadOptions = {}): HubConfig {
  const env = options.env ?? process.env;
  const path = options.path ?? env.YILIAN_CONFIG;
  let raw: unknown = {};
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new HubError('invalid', `cannot read configuration ${path}: ${(error as Error).message}`, path);
    }
    try {
      // yaml is required here, not at the top: a command configured by JSON or the environment alone starts 70 ms sooner.
      raw = /\.ya?ml$/i.test(path) ? (require('yaml') as typeof import('yaml')).parse(text) : JSON.parse(text);
    } catch (error) {
      throw new HubError('invalid', `configuration ${path} is not valid ${/\.ya?ml$/i.test(path) ? 'YAML' : 'JSON'}: ${(error as Error).message}`, path);
    }
  }
  const config = parseConfig(raw ?? {});
  if (env.DATABASE_URL) config.databaseUrl = env.DATABASE_URL;
  if (env.REDIS_URL) {
    clusterTarget(env.REDIS_URL); // a malformed cluster URL is refused here, naming it
    config.redisUrl = env.REDIS_URL;
    checkRedisPrefix(config);
  }
  if (env.YILIAN_API_KEYS) config.api.keys.push(...parseKeyList(env.YILIAN_API_KEYS));
  return config;
}

/** `name:key:scope+scope,…` — for containers, where keys come from the environment. */
function parseKeyList(list: string): HubConfig['api']['keys'] {
  return list
    .split(',')
    .filter(Boolean)
    .map((entry, i) => {
      const [name, key, scopes] = entry.split(':');
      const parsed = apiKeySchema.safeParse({ name, key, scopes: (scopes ?? '').split('+').filter(Boolean) });
      if (!parsed.success) throw new HubError('invalid', `YILIAN_API_KEYS entry ${i + 1}: ${parsed.error.issues[0]!.message}`, 'YILIAN_API_KEYS');
      return parsed.data;
    });
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/**
 * The member named on the command line. An unknown one is added as a plain member (tier unknown)
 * with a warning, so a file can be tried without writing configuration first.
 */
export function ensureMember(config: HubConfig, memberId: string, warn: (text: string) => void = (t) => process.stderr.write(`${t}\n`)): MemberConfig {
  const found = config.members.find((m) => m.id === memberId);
  if (found) return found;
  const parsed = memberSchema.safeParse({ id: memberId, name: memberId, tier: 'unknown' });
  if (!parsed.success) throw new HubError('invalid', `member id "${memberId}": ${parsed.error.issues[0]!.message}`, 'member');
  warn(`warning: member ${memberId} is not configured; using it as a plain member (tier unknown)`);
  config.members.push(parsed.data);
  return parsed.data;
}

/** Minutes east of UTC from "+08:00". */
export function offsetMinutes(member: MemberConfig): number {
  const sign = member.utcOffset.startsWith('-') ? -1 : 1;
  const [h, m] = member.utcOffset.slice(1).split(':').map(Number);
  return sign * (h! * 60 + m!);
}

/** Charset policy of a member's channel; channels not in config (CLI ingest) decode as UTF-8 unless MSH-18 says otherwise. */
export function charsetPolicyOf(config: HubConfig, memberId: string, channelId: string): CharsetPolicy {
  const channel = config.members.find((m) => m.id === memberId)?.channels.find((c) => c.id === channelId);
  if (channel && (channel.kind === 'mllp' || channel.kind === 'file')) return channelCharsetPolicy(channel);
  return { defaultCharset: 'UTF-8' };
}

/** The charset policy an HL7 v2 channel declares: read by its adapter at intake and by the parse stage. */
export function channelCharsetPolicy(channel: MllpChannelConfig | FileChannelConfig): CharsetPolicy {
  return { defaultCharset: channel.charset, forceCharset: channel.forceCharset };
}

export function utcOffsetOf(config: HubConfig, memberId: string): number {
  const member = config.members.find((m) => m.id === memberId);
  return member ? offsetMinutes(member) : 8 * 60;
}

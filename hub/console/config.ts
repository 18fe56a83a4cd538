/**
 * The console's part of the hub configuration (`console:` in the config file): its users with their
 * role and scrypt password hash, how long a session lasts, and the per-channel alert thresholds.
 * Roles are fixed here and map onto the API scopes the CLI's keys already use, so a console user can
 * do exactly what an API key with those scopes can do — never more.
 */
import { z } from 'zod';
import type { Scope } from '../scopes';

export const consoleRoles = ['admin', 'integration', 'governance', 'viewer'] as const;
export type ConsoleRole = (typeof consoleRoles)[number];

/**
 * Role → API scopes. `patient.read` lets a role read messages (patient data; every read is audited);
 * only `integration` (and `admin`) may replay; `governance` decides on mappings and recognition rules.
 */
export const roleScopes: Record<ConsoleRole, Scope[]> = {
  admin: ['admin'],
  integration: ['integration', 'metrics'],
  governance: ['governance', 'metrics', 'patient.read'],
  viewer: ['metrics', 'patient.read'],
};

/** `scrypt$N$r$p$salt$hash` (salt and hash base64), made by hashPassword (api/console/password.ts). */
export const passwordHashPattern = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/;

export const consoleUserSchema = z.object({
  /** Login name; audit events name the user as `console:<name>`. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/, 'letters, digits, _ . @ - (at most 64)'),
  role: z.enum(consoleRoles),
  passwordHash: z.string().regex(passwordHashPattern, 'scrypt$N$r$p$salt$hash, from `node dist/api/console/password.js`'),
});

const thresholds = z.object({
  /** Alert when a channel has received nothing for this long (0: never). */
  silenceMinutes: z.number().int().min(0).optional(),
  /** Alert when the last hour is at least this much below the hourly average of the 24 hours before it. */
  volumeDropPercent: z.number().min(1).max(100).optional(),
  /** No volume-drop alert while that hourly average is below this (quiet channels are noisy in percent). */
  minBaselinePerHour: z.number().min(0).optional(),
});

export const consoleConfigSchema = z
  .object({
    users: z.array(consoleUserSchema).default([]),
    sessionHours: z.number().positive().max(24 * 7).default(12),
    alerts: z
      .object({
        silenceMinutes: z.number().int().min(0).default(60),
        volumeDropPercent: z.number().min(1).max(100).default(50),
        minBaselinePerHour: z.number().min(0).default(5),
        /** Overrides per channel, keyed `member/channel`. */
        channels: z.record(z.string().regex(/^[^/]+\/[^/]+$/, 'member/channel'), thresholds).default({}),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    const seen = new Set<string>();
    c.users.forEach((u, i) => {
      if (seen.has(u.name)) ctx.addIssue({ code: 'custom', path: ['users', i, 'name'], message: `duplicate console user ${u.name}` });
      seen.add(u.name);
    });
  });

export type ConsoleConfig = z.infer<typeof consoleConfigSchema>;
export type AlertThresholds = { silenceMinutes: number; volumeDropPercent: number; minBaselinePerHour: number };

/** The console's settings; a configuration without a `console:` section gets the defaults (and no users). */
export function consoleSettings(config: { console?: ConsoleConfig }): ConsoleConfig {
  return config.console ?? consoleConfigSchema.parse({});
}

export function thresholdsFor(config: ConsoleConfig, member: string, channel: string): AlertThresholds {
  const { channels, ...defaults } = config.alerts;
  return { ...defaults, ...channels[`${member}/${channel}`] };
}

/**
 * Console sessions. A login gives a random token in a cookie (HttpOnly, SameSite=Strict, Secure
 * behind TLS); Redis holds sha256(token) → user with the session's lifetime, so sessions survive an
 * API restart and are shared by several API processes. Each request re-reads the user's role from
 * the configuration: removing a user or changing a role takes effect on the next request.
 * Owns: turning a session cookie into the same `req.principal` an API key gives. Must never: accept a
 * session for a state-changing request without the console's header (a second guard against CSRF
 * besides SameSite).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { RedisConnection } from '../../hub/redis';
import type { HubConfig } from '../../hub/config';
import { authenticator, type Principal } from '../auth';
import { consoleSettings, roleScopes, type ConsoleRole } from '../../hub/console/config';
import { unknownUserHash, verifyPassword } from './password';
import { sendClientError } from '../errors';

export const SESSION_COOKIE = 'yilian_console';
/** Sent by the console's own script on every API call; a cross-site form or image cannot set it. */
export const CONSOLE_HEADER = 'x-yilian-console';

export interface ConsoleSession {
  user: string;
  role: ConsoleRole;
}

/** Five wrong passwords for a name, each within LOCK_MS of the previous one, lock it for LOCK_MS. */
export const LOCK_AFTER_FAILURES = 5;
const LOCK_MS = 60_000;

/**
 * Take one attempt for a name, atomically (one Lua script: nothing else runs in Redis between its
 * read and its write), before the password is checked: parallel attempts each take their own
 * number, so no more than the limit of them are ever checked (checking first and counting after
 * let all of 60 parallel guesses through, and a right password among them log in). Returns the
 * attempt's number; above the limit it is refused unchecked. Only counted attempts renew the
 * minute, so a locked name opens a minute after its last checked failure however often it is tried.
 */
const TAKE_ATTEMPT = `
local n = redis.call('INCR', KEYS[1])
if n <= tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n`;

/**
 * A right password starts the count over, unless attempts beside it were refused meanwhile (the
 * count went past the limit): then the name is locked and stays so; this attempt had been taken
 * within the limit, so it was fairly checked.
 */
const RELEASE_ON_SUCCESS = `
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > tonumber(ARGV[1]) then return n end
redis.call('DEL', KEYS[1])
return 0`;

export class SessionStore {
  constructor(
    private readonly redis: RedisConnection,
    private readonly config: HubConfig,
    private readonly prefix: string,
  ) {}

  private key(token: string): string {
    return `${this.prefix}:console:session:${createHash('sha256').update(token).digest('hex')}`;
  }

  /**
   * Failed logins of a user name, in Redis so that every API process counts the same attempts (a
   * per-process count would give an attacker five tries per process behind a load balancer). The
   * counter lives a minute after the last failure: five failures, each within a minute of the
   * previous one, lock the name until a minute has passed without one.
   */
  private failureKey(name: string): string {
    return `${this.prefix}:console:login-failures:${createHash('sha256').update(name).digest('hex')}`;
  }

  /**
   * Take an attempt (TAKE_ATTEMPT), then check the password; on success store a session and return
   * its token. A wrong password keeps its attempt counted.
   */
  async login(name: string, password: string): Promise<{ token: string; session: ConsoleSession } | { error: 'locked' | 'wrong' }> {
    const failures = this.failureKey(name);
    const attempt = Number(await this.redis.eval(TAKE_ATTEMPT, 1, failures, LOCK_AFTER_FAILURES, LOCK_MS));
    if (attempt > LOCK_AFTER_FAILURES) return { error: 'locked' };
    const user = consoleSettings(this.config).users.find((u) => u.name === name);
    const ok = await verifyPassword(password, user?.passwordHash ?? unknownUserHash);
    if (!ok || !user) return { error: 'wrong' };
    await this.redis.eval(RELEASE_ON_SUCCESS, 1, failures, LOCK_AFTER_FAILURES);
    const token = randomBytes(32).toString('base64url');
    const session: ConsoleSession = { user: user.name, role: user.role };
    await this.redis.set(this.key(token), JSON.stringify(session), 'PX', Math.round(consoleSettings(this.config).sessionHours * 3600_000));
    return { token, session };
  }

  async logout(token: string): Promise<void> {
    await this.redis.del(this.key(token));
  }

  /** The session of a token, if it exists and its user is still configured (with the role configured now). */
  async find(token: string | undefined): Promise<ConsoleSession | undefined> {
    if (!token || token.length > 200) return undefined;
    const stored = await this.redis.get(this.key(token));
    if (!stored) return undefined;
    const session = JSON.parse(stored) as ConsoleSession;
    const user = consoleSettings(this.config).users.find((u) => u.name === session.user);
    return user ? { user: user.name, role: user.role } : undefined;
  }

  async fromRequest(req: Request): Promise<ConsoleSession | undefined> {
    return this.find(cookiesOf(req)[SESSION_COOKIE]);
  }
}

export function principalOf(session: ConsoleSession): Principal & { role: ConsoleRole } {
  return { name: `console:${session.user}`, scopes: roleScopes[session.role], role: session.role };
}

/**
 * Replaces the API's authenticator: an API key when one is presented (the CLI, other systems),
 * else the console session cookie, else the API key authenticator's 401.
 */
export function sessionOrApiKey(config: HubConfig, sessions: SessionStore) {
  const byKey = authenticator(config);
  return async (req: Request, res: Response, next: NextFunction) => {
    if (req.header('authorization') || req.header('x-api-key') || !cookiesOf(req)[SESSION_COOKIE]) return byKey(req, res, next);
    try {
      const session = await sessions.fromRequest(req);
      if (!session) return void sendClientError(res, 401, 'unauthenticated', 'console session expired or unknown: log in again');
      if (req.method !== 'GET' && req.method !== 'HEAD' && req.header(CONSOLE_HEADER) !== '1') {
        return sendClientError(res, 403, 'forbidden', `a console session may change things only with the ${CONSOLE_HEADER} header`);
      }
      req.principal = principalOf(session);
      next();
    } catch (error) {
      next(error);
    }
  };
}

export function cookiesOf(req: Request): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.header('cookie') ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at < 0) continue;
    const name = part.slice(0, at).trim();
    try {
      out[name] = decodeURIComponent(part.slice(at + 1).trim());
    } catch {
      // a malformed cookie is ignored, like a missing one
    }
  }
  return out;
}

export function sessionCookie(req: Request, token: string, maxAgeSeconds: number): string {
  return `${SESSION_COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${req.secure ? '; Secure' : ''}`;
}

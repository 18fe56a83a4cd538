/**
 * The operations console (docs/console.md), mounted by api/server.ts in three parts:
 * `pages` (HTML, login, assets; open), `authenticate` (a console session cookie or an API key: it
 * takes the place of the API-key authenticator for every route after it) and `api` (the console's
 * JSON routes, behind scopes like every other /api route).
 */
import type express from 'express';
import type { ApiContext } from '../context';
import { consoleApi } from './api';
import { consolePages } from './pages';
import { SessionStore, sessionOrApiKey } from './session';

export interface MountedConsole {
  pages: express.Router;
  authenticate: express.RequestHandler;
  api: express.Router;
}

export function mountConsole(runtime: ApiContext): MountedConsole {
  const sessions = new SessionStore(runtime.queues.redis, runtime.config, runtime.config.pipeline.queuePrefix);
  return {
    pages: consolePages(runtime, sessions),
    authenticate: sessionOrApiKey(runtime.config, sessions),
    api: consoleApi(runtime),
  };
}

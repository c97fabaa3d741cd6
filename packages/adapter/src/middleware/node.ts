/**
 * node:http and Express middleware: `(req, res, next)`. On allow it sets `req.trustplane` (the
 * allow decision) and `req.trustplaneBody` (the raw body bytes, which the verifier had to
 * consume to hash) and calls `next()`; on denial it answers the mapped status with
 * `{"allowed":false,"reason":"<code>"}` and never calls `next`.
 *
 * Express: mount it BEFORE any body parser (express.json() & co.) — a parser that ran first has
 * consumed the stream, and a parser that runs after finds it ended. Read the body from
 * `req.trustplaneBody` (e.g. `JSON.parse(req.trustplaneBody.toString())`).
 *
 * Express must route case-sensitively (`app.set('case sensitive routing', true)`): route
 * policy matches paths byte for byte, so with Express's default a request for
 * `/v1/orders/SEARCH` is authorized as the policy's `/v1/orders/{id}` while Express runs the
 * `/v1/orders/search` handler. In an app that routes case-insensitively every request is
 * refused (500 `internal_error`, and an error log that says what to set).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AllowDecision, Verifier } from '@trustplane/core';
import { sendDenial } from '../proxy.js';
import { log } from '../audit-sink.js';
import { verifyNodeRequest } from './core.js';

export interface TrustPlaneMiddlewareOptions {
  /** Largest body buffered for hashing (→ 413). Default 1 MiB. */
  maxBodyBytes?: number;
}

/** What the middleware adds to the request. */
export interface TrustPlaneRequestFields {
  trustplane?: AllowDecision;
  trustplaneBody?: Buffer;
}

export type TrustPlaneRequest = IncomingMessage & TrustPlaneRequestFields;

export type NodeMiddleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/** True when `req` belongs to an Express app that matches routes case-insensitively (its default). */
function expressIgnoresCase(req: IncomingMessage): boolean {
  const app = (req as { app?: { enabled?: unknown } }).app;
  return app !== undefined && typeof app.enabled === 'function' && (app.enabled as (setting: string) => boolean).call(app, 'case sensitive routing') !== true;
}

export function createTrustPlaneMiddleware(verifier: Verifier, opts: TrustPlaneMiddlewareOptions = {}): NodeMiddleware {
  let warned = false;
  return (req, res, next) => {
    if (expressIgnoresCase(req)) {
      if (!warned) {
        warned = true;
        log('error', "refusing every request: this Express app routes case-insensitively, so the handler that runs may not be the route the policy authorized; set app.set('case sensitive routing', true) (and caseSensitive: true on its Routers)");
      }
      sendDenial(res, 'internal_error');
      return;
    }
    verifyNodeRequest(verifier, req, opts.maxBodyBytes !== undefined ? { maxBodyBytes: opts.maxBodyBytes } : {}).then(
      (r) => {
        if (!r.allowed) {
          if (r.aborted === true) res.destroy();
          else sendDenial(res, r.reason, r.status === 413);
          return;
        }
        const tr = req as TrustPlaneRequest;
        tr.trustplane = r.decision;
        tr.trustplaneBody = r.body;
        next();
      },
      () => sendDenial(res, 'internal_error', true), // fail closed
    );
  };
}

/** Express middleware: the same function, named for discoverability. */
export const createTrustPlaneExpressMiddleware = createTrustPlaneMiddleware;

/**
 * The Node stacks of the differential suite (differential.test.ts), each routing with its OWN
 * router: as upstreams behind the adapter (node:http hand routing on req.url as is, Express
 * default, Express case-sensitive, Express case-sensitive with an express.Router() mounted under
 * /v1, Fastify, Hono) and with the same routes behind each in-process MIDDLEWARE, where the app
 * itself runs the handler after the guard.
 *
 * Override conventions that real deployments honour are honoured on purpose, so that the suite
 * can see whether the guard lets them through: the node:http apps route on X-Original-URL /
 * X-Rewrite-URL (IIS/Symfony) and take X-HTTP-Method-Override, X-HTTP-Method and
 * X-Method-Override on POST (Symfony/Rack); the Express apps do what the `method-override`
 * package does by default (X-HTTP-Method-Override on POST).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Request as ExpressRequest } from 'express';
import Fastify, { type FastifyRequest } from 'fastify';
import { Hono, type Context } from 'hono';
import { serve } from '@hono/node-server';
import type { AllowDecision, Verifier } from '@trustplane/core';
import { sortPairs, type HandlerReply, type UpstreamStack } from '@trustplane/testkit';
import { createTrustPlaneMiddleware, trustplaneFastify, trustplaneHono, type TrustPlaneHonoEnv, type TrustPlaneRequest, type TrustPlaneFastifyRequest } from '../src/middleware/index.js';

type Route = 'orders.list' | 'orders.create' | 'orders.delete_all' | 'orders.search' | 'orders.get' | 'orders.delete';

/** Every stack implements these, in its own router's syntax. */
const ROUTES: readonly { method: string; path: string; express: string; handler: Route }[] = [
  { method: 'GET', path: '/v1/orders/search', express: '/orders/search', handler: 'orders.search' },
  { method: 'GET', path: '/v1/orders/:order_id', express: '/orders/:order_id', handler: 'orders.get' },
  { method: 'DELETE', path: '/v1/orders/:order_id', express: '/orders/:order_id', handler: 'orders.delete' },
  { method: 'GET', path: '/v1/orders', express: '/orders', handler: 'orders.list' },
  { method: 'POST', path: '/v1/orders', express: '/orders', handler: 'orders.create' },
  { method: 'DELETE', path: '/v1/orders', express: '/orders', handler: 'orders.delete_all' },
];

function firstString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
  return null;
}

function pairsOf(q: unknown): [string, string][] {
  const out: [string, string][] = [];
  if (q === null || typeof q !== 'object') return out;
  for (const [k, v] of Object.entries(q as Record<string, unknown>)) {
    for (const x of Array.isArray(v) ? v : [v]) out.push([k, typeof x === 'string' ? x : JSON.stringify(x)]);
  }
  return sortPairs(out);
}

function reply(handler: string, method: string, subject: string | null, tenant: string | null, query: unknown, decision?: AllowDecision): HandlerReply {
  return { handler, method, subject, tenant, query: pairsOf(query), ...(decision !== undefined ? { policy_route: decision.routeId } : {}) };
}

interface Recorder {
  readonly ids: string[];
  record(headers: Readonly<Record<string, unknown>>): void;
}

function recorder(): Recorder {
  const ids: string[] = [];
  return { ids, record: (h) => ids.push(firstString(h['x-request-id']) ?? '') };
}

function stackOf(name: string, server: Server, rec: Recorder, extra?: () => Promise<void>): UpstreamStack {
  return {
    name,
    port: (server.address() as AddressInfo).port,
    seen: () => Promise.resolve([...rec.ids]),
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await extra?.();
    },
  };
}

function listen(server: Server): Promise<Server> {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server)));
}

// ---------------------------------------------------------------------------------------------
// node:http, routing by hand on req.url as received
// ---------------------------------------------------------------------------------------------

const OVERRIDE_METHOD_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override'];

function handRoute(method: string, path: string): Route | undefined {
  if (path === '/v1/orders') return ({ GET: 'orders.list', POST: 'orders.create', DELETE: 'orders.delete_all' } as const)[method as 'GET'];
  if (path === '/v1/orders/search') return method === 'GET' ? 'orders.search' : undefined;
  if (/^\/v1\/orders\/[^/]+$/.test(path)) return ({ GET: 'orders.get', DELETE: 'orders.delete' } as const)[method as 'GET'];
  return undefined;
}

/** The hand-routed app: Symfony-style URL and method overrides, then exact-string routing. */
function handApp(req: IncomingMessage, res: ServerResponse, subjectOf: () => string | null, decision?: AllowDecision): void {
  const target = firstString(req.headers['x-original-url']) ?? firstString(req.headers['x-rewrite-url']) ?? req.url ?? '';
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  let method = req.method ?? '';
  if (method === 'POST') {
    for (const h of OVERRIDE_METHOD_HEADERS) {
      const m = firstString(req.headers[h]);
      if (m !== null) {
        method = m.toUpperCase();
        break;
      }
    }
  }
  const handler = handRoute(method, path);
  if (handler === undefined) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('no route');
    return;
  }
  const query = Object.fromEntries([...new URLSearchParams(q < 0 ? '' : target.slice(q + 1)).keys()].map((k) => [k, new URLSearchParams(target.slice(q + 1)).getAll(k)]));
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply(handler, method, subjectOf(), firstString(req.headers['x-tenant']), query, decision)));
}

export async function nodeHttpUpstream(): Promise<UpstreamStack> {
  const rec = recorder();
  const server = createServer((req, res) => {
    rec.record(req.headers);
    req.resume();
    req.on('end', () => handApp(req, res, () => firstString(req.headers['x-trustplane-subject'])));
  });
  return stackOf('node:http', await listen(server), rec);
}

export async function nodeHttpMiddleware(verifier: Verifier): Promise<UpstreamStack> {
  const rec = recorder();
  const guard = createTrustPlaneMiddleware(verifier);
  const server = createServer((req, res) => {
    guard(req, res, () => {
      rec.record(req.headers);
      const d = (req as TrustPlaneRequest).trustplane!;
      handApp(req, res, () => d.subject, d);
    });
  });
  return stackOf('middleware node:http', await listen(server), rec);
}

// ---------------------------------------------------------------------------------------------
// Express
// ---------------------------------------------------------------------------------------------

type ExpressMode = 'default' | 'case-sensitive' | 'case-sensitive+router';

/** What the `method-override` package does by default: X-HTTP-Method-Override on POST. */
function methodOverride(req: ExpressRequest, _res: unknown, next: () => void): void {
  const m = req.get('x-http-method-override');
  if (req.method === 'POST' && m !== undefined) req.method = m.toUpperCase();
  next();
}

function expressApp(mode: ExpressMode, rec: Recorder, guard?: ReturnType<typeof createTrustPlaneMiddleware>) {
  const app = express();
  if (mode !== 'default') app.set('case sensitive routing', true);
  if (guard !== undefined) app.use(guard);
  app.use((req, _res, next) => {
    rec.record(req.headers);
    next();
  });
  app.use(methodOverride);
  const handle = (route: Route) => (req: ExpressRequest, res: express.Response) => {
    const d = (req as ExpressRequest & TrustPlaneRequest).trustplane;
    res.json(reply(route, req.method, d !== undefined ? d.subject : (req.get('x-trustplane-subject') ?? null), req.get('x-tenant') ?? null, req.query, d));
  };
  // A default Router ignores case even under a case-sensitive app.
  const target = mode === 'case-sensitive+router' ? express.Router() : app;
  for (const r of ROUTES) {
    const p = mode === 'case-sensitive+router' ? r.express : r.path;
    target[r.method.toLowerCase() as 'get'](p, handle(r.handler));
  }
  if (mode === 'case-sensitive+router') app.use('/v1', target as express.Router);
  return app;
}

export async function expressUpstream(mode: ExpressMode): Promise<UpstreamStack> {
  const rec = recorder();
  return stackOf(`express ${mode}`, await listen(createServer(expressApp(mode, rec))), rec);
}

export async function expressMiddleware(verifier: Verifier): Promise<UpstreamStack> {
  const rec = recorder();
  return stackOf('middleware express case-sensitive+router', await listen(createServer(expressApp('case-sensitive+router', rec, createTrustPlaneMiddleware(verifier)))), rec);
}

// ---------------------------------------------------------------------------------------------
// Fastify
// ---------------------------------------------------------------------------------------------

async function fastifyStack(name: string, verifier?: Verifier): Promise<UpstreamStack> {
  const rec = recorder();
  const app = Fastify();
  if (verifier !== undefined) {
    await app.register(trustplaneFastify, { verifier });
    // After the plugin's preParsing hook: only a request the guard let through gets here.
    app.addHook('preValidation', (req, _reply, done) => {
      rec.record(req.headers);
      done();
    });
  } else {
    app.addHook('onRequest', (req, _reply, done) => {
      rec.record(req.headers);
      done();
    });
  }
  for (const r of ROUTES) {
    app.route({
      method: r.method,
      url: r.path,
      handler: (req: FastifyRequest) => {
        const d = (req as TrustPlaneFastifyRequest).trustplane;
        return Promise.resolve(reply(r.handler, req.method, d !== undefined ? d.subject : firstString(req.headers['x-trustplane-subject']), firstString(req.headers['x-tenant']), req.query, d));
      },
    });
  }
  await app.listen({ port: 0, host: '127.0.0.1' });
  return stackOf(name, app.server, rec, async () => {
    await app.close();
  });
}

export const fastifyUpstream = (): Promise<UpstreamStack> => fastifyStack('fastify');
export const fastifyMiddleware = (verifier: Verifier): Promise<UpstreamStack> => fastifyStack('middleware fastify', verifier);

// ---------------------------------------------------------------------------------------------
// Hono on @hono/node-server
// ---------------------------------------------------------------------------------------------

async function honoStack(name: string, verifier?: Verifier): Promise<UpstreamStack> {
  const rec = recorder();
  const app = new Hono<TrustPlaneHonoEnv>();
  if (verifier !== undefined) app.use('*', trustplaneHono(verifier));
  app.use('*', async (c, next) => {
    rec.record({ 'x-request-id': c.req.header('x-request-id') });
    await next();
  });
  const handle = (route: Route) => (c: Context<TrustPlaneHonoEnv>) => {
    const d = verifier !== undefined ? c.get('trustplane') : undefined;
    return c.json(reply(route, c.req.method, d !== undefined ? d.subject : (c.req.header('x-trustplane-subject') ?? null), c.req.header('x-tenant') ?? null, c.req.queries(), d));
  };
  for (const r of ROUTES) app.on(r.method, r.path, handle(r.handler));
  const server = await new Promise<Server>((r) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => r(s as Server));
  });
  return stackOf(name, server, rec);
}

export const honoUpstream = (): Promise<UpstreamStack> => honoStack('hono');
export const honoMiddleware = (verifier: Verifier): Promise<UpstreamStack> => honoStack('middleware hono', verifier);

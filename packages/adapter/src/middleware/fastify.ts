/**
 * Fastify plugin. A `preParsing` hook receives the payload stream: it is read (bounded) and
 * hashed, the request verified, and the same bytes re-provided as a fresh stream so Fastify's
 * content-type parsers still see the body. On allow `request.trustplane` holds the decision
 * and `request.trustplaneBody` the raw body; on denial the reply is the mapped status with
 * `{"allowed":false,"reason":"<code>"}` and the route handler never runs.
 *
 * Fastify decodes the path before routing and may be told to ignore case; the verifier refuses
 * (`non_canonical_path`) any path whose route would differ under either reading, so every
 * router option is safe.
 *
 * The plugin is not encapsulated (like fastify-plugin), so registering it at the root guards
 * every route; register it inside a scoped plugin to guard only that scope.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { AllowDecision, Verifier } from '@trustplane/core';
import { verifyNodeRequest, denialBody } from './core.js';

export interface TrustPlaneFastifyOptions {
  verifier: Verifier;
  /** Largest body buffered for hashing (→ 413). Default 1 MiB. */
  maxBodyBytes?: number;
}

export type TrustPlaneFastifyRequest = FastifyRequest & { trustplane?: AllowDecision; trustplaneBody?: Buffer };

function plugin(fastify: FastifyInstance, opts: TrustPlaneFastifyOptions): Promise<void> {
  fastify.decorateRequest('trustplane', undefined);
  fastify.decorateRequest('trustplaneBody', undefined);
  fastify.addHook('preParsing', async (request: FastifyRequest, reply: FastifyReply, payload) => {
    const r = await verifyNodeRequest(opts.verifier, request.raw, {
      target: request.raw.url ?? '',
      bodyStream: payload,
      ...(opts.maxBodyBytes !== undefined ? { maxBodyBytes: opts.maxBodyBytes } : {}),
    });
    if (!r.allowed) {
      if (r.aborted === true) {
        request.raw.destroy();
        return payload;
      }
      const headers: Record<string, string> = { 'content-type': 'application/json', 'cache-control': 'no-store' };
      if (r.status === 401) headers['www-authenticate'] = 'Bearer realm="trustplane"';
      await reply.code(r.status).headers(headers).send(denialBody(r.reason));
      return payload;
    }
    const tr = request as TrustPlaneFastifyRequest;
    tr.trustplane = r.decision;
    tr.trustplaneBody = r.body;
    const replay = Readable.from(r.body.length === 0 ? [] : [r.body]) as Readable & { receivedEncodedLength?: number };
    replay.receivedEncodedLength = r.body.length;
    return replay;
  });
  return Promise.resolve();
}
(plugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
(plugin as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] = 'trustplane';

export const trustplaneFastify: FastifyPluginAsync<TrustPlaneFastifyOptions> = plugin;

/** @trustplane/adapter/middleware — in-process verification for node:http, Express, Fastify and Hono. */
export { verifyNodeRequest, decideBuffered, denialBody, DEFAULT_MAX_BODY_BYTES, type VerifyNodeRequestOptions, type NodeVerifyResult, type NodeVerifyDenial, type BufferedRequest } from './core.js';
export { createTrustPlaneMiddleware, createTrustPlaneExpressMiddleware, type TrustPlaneMiddlewareOptions, type TrustPlaneRequest, type TrustPlaneRequestFields, type NodeMiddleware } from './node.js';
export { trustplaneFastify, type TrustPlaneFastifyOptions, type TrustPlaneFastifyRequest } from './fastify.js';
export { trustplaneHono, type TrustPlaneHonoOptions, type TrustPlaneHonoEnv } from './hono.js';

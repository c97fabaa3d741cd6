/** @trustplane/broker — request-bound passports over a pod-local Unix socket (SPEC §6). */
export * from './ipc.js';
export * from './broker.js';
export * from './server.js';
export * from './client.js';
export * from './spiffe-source.js';
export * from './spiffe/index.js';

/**
 * Connection limits of the HTTP servers this package runs: client timeouts that are enforced
 * (node:http checks them only every `connectionsCheckingInterval`, 30 s by default), a
 * connection cap, and a connection that failed its request (a header or request timeout, a
 * parse error) destroyed after a bounded attempt to write its 400 — never left half-closed
 * waiting for a client that does not read or close.
 */
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { log } from './audit-sink.js';

/** Default `--max-connections`: open client connections per process (each worker has its own). */
export const DEFAULT_MAX_CONNECTIONS = 1024;

/** How long a refused connection may take to take its 400 before it is destroyed. */
export const CLIENT_ERROR_LINGER_MS = 1000;

export interface ClientTimeouts {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
}

/** The `createServer` options that enforce `limits`, each noticed at most 250 ms late. */
export function serverTimeoutOptions(limits: ClientTimeouts): { headersTimeout: number; requestTimeout: number; keepAliveTimeout: number; connectionsCheckingInterval: number } {
  const finest = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs, 1000);
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // A timeout is noticed up to one interval late: at most a quarter of the shortest one (≤ 250 ms).
    connectionsCheckingInterval: Math.max(10, Math.floor(finest / 4)),
  };
}

/**
 * Destroy `socket` once what was written to it is flushed (its end was, or is about to be,
 * called), or after CLIENT_ERROR_LINGER_MS whatever the client does: a client that never reads
 * keeps the write from finishing, and a half-closed socket would otherwise wait for its FIN for
 * ever.
 */
export function destroyWithin(socket: Duplex): void {
  if (socket.destroyed) return;
  if (socket.writableFinished) {
    socket.destroy();
    return;
  }
  const timer = setTimeout(() => socket.destroy(), CLIENT_ERROR_LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.once('finish', () => socket.destroy());
}

/** Write `response` (a whole raw HTTP response), end, and destroy the socket (destroyWithin). */
export function endAndDestroy(socket: Duplex, response: string): void {
  destroyWithin(socket);
  if (socket.writable) socket.end(response);
}

/**
 * Cap `server`'s open connections at `max`: past it node:http closes a new connection at once
 * (it is never read). The refusals are logged at most once per 10 s.
 */
export function capConnections(server: Server, max: number, name: string): void {
  if (!Number.isSafeInteger(max) || max <= 0) throw new TypeError('maxConnections must be a positive integer');
  server.maxConnections = max;
  let refused = 0;
  let lastLogMs = 0;
  server.on('drop', () => {
    refused++;
    const now = Date.now();
    if (now - lastLogMs < 10_000) return;
    lastLogMs = now;
    log('warn', `${name}: connection limit reached; new connections are closed`, { max_connections: max, refused_since_start: refused });
  });
}

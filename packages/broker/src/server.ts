/**
 * The broker's IPC v1 server (SPEC §6): a Unix domain socket only — never TCP — created with
 * mode 0600 (or 0660 for a configured group). Each connection carries one exchange: one JSON
 * line in (at most 1 MiB), one JSON object + LF out, then the broker closes its side.
 *
 * Robustness: a line over the cap gets `broker_request_too_large` and the connection is closed
 * without reading the rest; a malformed line gets `broker_request_malformed` (with the
 * request_id echoed when one could be read); a client that sends nothing complete within the
 * read timeout is dropped, and one that has sent nothing at all within the (much shorter) idle
 * timeout; a client that vanishes mid-exchange costs nothing but its socket. None of these stop
 * the server.
 *
 * Connection slots: at most `maxConnections` are open. A connection arriving when all are taken
 * takes the slot of the oldest one that cannot be a caller waiting for its answer — one already
 * answered (lingering before its close), else one that has sent nothing yet — so idle connections
 * never keep a real request out; only when every slot holds a request being read is the new
 * connection refused (closed).
 *
 * Peer credentials: Linux has SO_PEERCRED, but Node.js does not expose it on net.Socket, so the
 * audit event records `peer: "unsupported"` rather than guessing. File permissions on the
 * socket are the access control.
 */
import { chmodSync, chownSync, lstatSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { buildAuditEvent, decodeUtf8Strict, systemClock, type AuditEvent, type Clock } from '@trustplane/core';
import { IpcRequestError, MAX_IPC_LINE_BYTES, denyResponse, parseIpcLine, type IpcResponse } from './ipc.js';
import type { Broker } from './broker.js';

export interface BrokerServerOptions {
  socketPath: string;
  broker: Broker;
  /** Numeric gid that may also connect (socket mode 0660); default: owner only (0600). */
  socketGid?: number;
  /** Drop a client that has not sent a complete line within this many ms (default 5000). */
  readTimeoutMs?: number;
  /** Drop a client that has sent no byte within this many ms (default 1000, at most readTimeoutMs). */
  idleTimeoutMs?: number;
  /** Open connections at most (default 256); past it the oldest idle or answered one is evicted. */
  maxConnections?: number;
  onAudit?: (event: AuditEvent) => void;
  /** Operational log lines (never secrets). */
  onLog?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  clock?: Clock;
}

export interface BrokerServer {
  readonly socketPath: string;
  /** Exchanges answered since start, by outcome. */
  readonly stats: { issued: number; denied: number; dropped: number; evicted: number; refused: number };
  close(): Promise<void>;
}

/**
 * What is at `socketPath`: nothing, something that is not a socket, a socket something accepts
 * connections on (`live`), one nobody listens on (`stale`: the connect is refused), or `unknown`
 * with the connect error that proves neither (EAGAIN from a full backlog, EACCES, no answer).
 */
export async function probeSocket(socketPath: string): Promise<'absent' | 'not_socket' | 'live' | 'stale' | { unknown: string }> {
  try {
    if (!lstatSync(socketPath).isSocket()) return 'not_socket';
  } catch {
    return 'absent';
  }
  return new Promise((resolve) => {
    const c = createConnection(socketPath);
    const timer = setTimeout(() => {
      c.destroy();
      resolve({ unknown: 'no answer within 2 s' });
    }, 2000);
    c.once('connect', () => {
      clearTimeout(timer);
      c.destroy();
      resolve('live');
    });
    c.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code === 'ECONNREFUSED' ? 'stale' : err.code === 'ENOENT' ? 'absent' : { unknown: err.code ?? err.message });
    });
  });
}

/** Refuse to clobber anything but a stale socket nobody listens on (only a refused connect proves that). */
async function clearStaleSocket(socketPath: string): Promise<void> {
  const found = await probeSocket(socketPath);
  if (found === 'absent') return;
  if (found === 'not_socket') throw new Error(`${socketPath} exists and is not a socket; refusing to replace it`);
  if (found === 'live') throw new Error(`${socketPath} is in use by a running broker`);
  if (found !== 'stale') throw new Error(`${socketPath} may be in use by a running broker (connecting to it failed: ${found.unknown}); refusing to replace it`);
  unlinkSync(socketPath);
}

export async function startBrokerServer(opts: BrokerServerOptions): Promise<BrokerServer> {
  const clock = opts.clock ?? systemClock;
  const readTimeoutMs = opts.readTimeoutMs ?? 5000;
  const idleTimeoutMs = Math.min(opts.idleTimeoutMs ?? 1000, readTimeoutMs);
  const maxConnections = opts.maxConnections ?? 256;
  if (!Number.isSafeInteger(maxConnections) || maxConnections <= 0) throw new TypeError('maxConnections must be a positive integer');
  const stats = { issued: 0, denied: 0, dropped: 0, evicted: 0, refused: 0 };
  const sockets = new Set<Socket>();
  // Each open connection is in exactly one of these, oldest first (a Set iterates in insertion
  // order): what an arriving connection may evict, in that order of preference.
  const answered = new Set<Socket>();
  const idle = new Set<Socket>();
  const evictFor = (): boolean => {
    for (const pool of [answered, idle]) {
      const oldest = pool.values().next();
      if (oldest.done !== true) {
        pool.delete(oldest.value);
        stats.evicted++;
        oldest.value.destroy();
        return true;
      }
    }
    return false;
  };
  const log = opts.onLog ?? (() => undefined);
  await clearStaleSocket(opts.socketPath);

  const audit = (response: IpcResponse, fields: Partial<Parameters<typeof buildAuditEvent>[0]>): void => {
    if (opts.onAudit === undefined) return;
    try {
      opts.onAudit(
        buildAuditEvent({
          component: 'broker',
          accepted: response.accepted,
          reason_code: response.reason_code,
          detail_reason: response.error?.message ?? 'passport issued',
          occurredAtMs: clock.now(),
          request_id: response.request_id,
          peer: 'unsupported',
          ...fields,
        }),
      );
    } catch (err) {
      log('error', 'audit sink failed', { error: err instanceof Error ? err.message : String(err) });
    }
  };

  const answer = (socket: Socket, response: IpcResponse): void => {
    if (response.accepted) stats.issued++;
    else stats.denied++;
    if (socket.destroyed) return;
    answered.add(socket);
    socket.end(`${JSON.stringify(response)}\n`);
    // One exchange per connection: a client that keeps its side open after the answer would
    // hold a connection slot for ever. It gets the read timeout to close, then is dropped.
    const linger = setTimeout(() => socket.destroy(), readTimeoutMs);
    linger.unref();
    socket.once('close', () => clearTimeout(linger));
  };

  const handleLine = (socket: Socket, bytes: Buffer): void => {
    let response: IpcResponse;
    let requestId = '';
    try {
      let line: string;
      try {
        line = decodeUtf8Strict(bytes, 'the request line');
      } catch (err) {
        throw new IpcRequestError(err instanceof Error ? err.message : 'the request line is not valid UTF-8', '');
      }
      const env = parseIpcLine(line);
      requestId = env.request.request_id;
      const d = opts.broker.decide(env.request);
      response = d.response;
      const a = d.audit;
      audit(response, {
        detail_reason: a.detail,
        route_id: env.request.http.route_id,
        audience: env.request.http.audience,
        required_key_binding: a.requiredKeyBinding,
        ...(a.subject !== undefined ? { subject: a.subject } : {}),
        ...(a.jti !== undefined ? { jti: a.jti } : {}),
        ...(a.keyBinding !== undefined ? { key_binding: a.keyBinding } : {}),
        ...(a.transcriptSha256 !== undefined ? { transcript_sha256: a.transcriptSha256 } : {}),
        ...(a.sourceProfile !== undefined ? { source_profile: a.sourceProfile } : {}),
        ...(a.sourceSpiffeId !== undefined ? { source_spiffe_id: a.sourceSpiffeId } : {}),
      });
    } catch (err) {
      if (err instanceof IpcRequestError) {
        response = denyResponse(err.requestId, 'broker_request_malformed', err.detail, false);
      } else {
        // Fail closed on anything unexpected; the detail stays in the operator log.
        log('error', 'broker exchange failed', { error: err instanceof Error ? err.message : String(err) });
        response = denyResponse(requestId, 'internal_error', 'the broker could not process the request', true);
      }
      audit(response, {});
    }
    answer(socket, response);
  };

  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => undefined); // a vanished client is not the broker's problem
    if (sockets.size >= maxConnections && !evictFor()) {
      // Every slot holds a request being read: refuse this one rather than drop a caller.
      stats.refused++;
      socket.destroy();
      return;
    }
    sockets.add(socket);
    idle.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      idle.delete(socket);
      answered.delete(socket);
    });
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const drop = (): void => {
      if (done) return;
      done = true;
      stats.dropped++;
      socket.destroy();
    };
    // The whole line within the read timeout; its first byte within the idle timeout.
    const timer = setTimeout(drop, readTimeoutMs);
    timer.unref();
    const idleTimer = setTimeout(drop, idleTimeoutMs);
    idleTimer.unref();
    const finish = (line: Buffer | undefined): void => {
      done = true;
      idle.delete(socket);
      clearTimeout(timer);
      clearTimeout(idleTimer);
      socket.removeAllListeners('data');
      socket.pause();
      chunks.length = 0; // nothing of the request is kept while the connection lingers
      if (line === undefined) {
        const response = denyResponse('', 'broker_request_too_large', `the request line exceeds ${MAX_IPC_LINE_BYTES} bytes`, false);
        audit(response, {});
        answer(socket, response);
        return;
      }
      handleLine(socket, line);
    };
    socket.on('data', (chunk: Buffer) => {
      if (done) return;
      if (idle.delete(socket)) clearTimeout(idleTimer);
      const nl = chunk.indexOf(0x0a);
      const take = nl === -1 ? chunk : chunk.subarray(0, nl);
      size += take.length;
      if (size > MAX_IPC_LINE_BYTES) return finish(undefined);
      chunks.push(take);
      if (nl !== -1) finish(Buffer.concat(chunks, size));
    });
    socket.on('end', () => {
      if (done) return;
      // A client that half-closes after its line without the LF still gets an answer.
      if (size > 0) finish(Buffer.concat(chunks, size));
      else {
        done = true;
        idle.delete(socket);
        clearTimeout(timer);
        clearTimeout(idleTimer);
        stats.dropped++;
        socket.end();
      }
    });
  });

  // Created owner-only from the first moment (no window where the socket is world-connectable),
  // then set to the final mode explicitly.
  const previousUmask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(previousUmask);
  }
  try {
    if (opts.socketGid !== undefined) {
      chownSync(opts.socketPath, -1, opts.socketGid);
      chmodSync(opts.socketPath, 0o660);
    } else {
      chmodSync(opts.socketPath, 0o600);
    }
  } catch (err) {
    // A broker that cannot set its socket's access must not serve: stop listening (which
    // removes the socket file) and fail the start.
    await new Promise<void>((r) => server.close(() => r()));
    throw err;
  }
  server.on('error', (err) => log('error', 'broker socket error', { error: err.message }));
  log('info', 'broker listening', { socket: opts.socketPath, mode: opts.socketGid !== undefined ? '0660' : '0600' });

  return {
    socketPath: opts.socketPath,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

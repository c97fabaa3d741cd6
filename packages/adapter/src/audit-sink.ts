/**
 * Where audit events and logs go. Audit events (one JSON line per decision) go to stdout or an
 * append-only file; operational logs are JSON lines on stderr. Neither ever receives a passport,
 * a proof or a header value: events are built by core's allow-listing builder.
 *
 * A sink that stops taking lines (a FIFO or pipe nobody reads, a full disk) never blocks the
 * event loop: the file is opened non-blocking, lines wait in a bounded buffer
 * (`--audit-buffer-bytes`) and are retried; past it, events are dropped, counted
 * (`trustplane_audit_events_dropped_total`), logged, and readiness reports the sink blocked.
 */
import { closeSync, constants as fsConstants, fstatSync, openSync, writeSync } from 'node:fs';
import type { AuditEvent } from '@trustplane/core';
import { TurnQueue } from './turn-queue.js';

export interface AuditSink {
  write(event: AuditEvent): void;
  close(): Promise<void>;
  /** Events that could not be written (the sink was blocked past its buffer, or closed with lines pending). */
  dropped?(): number;
  /** A readiness problem while the sink is blocked (its buffer full, events being dropped). */
  problem?(): string | undefined;
}

export interface AuditSinkOptions {
  /** Most bytes of audit lines held while the sink does not take them (default 4 MiB). */
  maxBufferBytes?: number;
  /** How long `close()` keeps trying to write what is buffered (default 2000 ms). */
  closeTimeoutMs?: number;
}

export const DEFAULT_AUDIT_BUFFER_BYTES = 4 * 1024 * 1024;
/** POSIX PIPE_BUF on Linux: a pipe write of at most this many bytes is atomic. */
export const PIPE_BUF = 4096;
const RETRY_MS = 50;

/**
 * The bounded buffer between the batcher and a sink that may not take lines now. `tryWrite`
 * writes what it can of a chunk and returns the bytes taken (0: would block) or throws; lines
 * that do not fit in the buffer are dropped and counted, never silently.
 */
export class AuditLineBuffer {
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;
  private droppedCount = 0;
  private streakDropped = 0;
  private failure: string | undefined;
  private retry: NodeJS.Timeout | undefined;

  /**
   * `maxChunk`: lines are written in chunks of whole lines no larger than this; for a pipe shared
   * by several processes (cluster workers on one stdout) PIPE_BUF, so lines never interleave.
   */
  constructor(
    private readonly target: string,
    private readonly tryWrite: (chunk: Buffer) => number,
    private readonly maxBuffer: number,
    private readonly maxChunk: number,
  ) {}

  push(lines: readonly string[]): void {
    for (const line of lines) {
      const buf = Buffer.from(line);
      if (this.pendingBytes + buf.length > this.maxBuffer) {
        if (this.streakDropped === 0) log('error', 'audit sink blocked: its buffer is full; audit events are dropped and counted until it takes lines again', { target: this.target, buffer_bytes: this.maxBuffer, error: this.failure });
        this.droppedCount++;
        this.streakDropped++;
        continue;
      }
      this.pending.push(buf);
      this.pendingBytes += buf.length;
    }
    this.drain();
  }

  /** Write what the sink takes now; retry the rest later. */
  drain(): void {
    while (this.pending.length > 0) {
      // Whole lines, up to maxChunk (a line longer than that goes alone).
      let n = 1;
      let size = this.pending[0]!.length;
      while (n < this.pending.length && size + this.pending[n]!.length <= this.maxChunk) size += this.pending[n++]!.length;
      const chunk = n === 1 ? this.pending[0]! : Buffer.concat(this.pending.slice(0, n), size);
      let written: number;
      try {
        written = this.tryWrite(chunk);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (this.failure === undefined) log('error', 'audit sink write failed; lines are buffered and retried', { target: this.target, error: message });
        this.failure = message;
        written = 0;
      }
      if (written === 0) {
        this.retry ??= setTimeout(() => {
          this.retry = undefined;
          this.drain();
        }, RETRY_MS);
        return;
      }
      this.failure = undefined;
      this.pending.splice(0, n);
      this.pendingBytes -= written;
      // A partial write: the rest of the chunk stays first in line.
      if (written < chunk.length) this.pending.unshift(chunk.subarray(written));
    }
    if (this.streakDropped > 0) {
      log('warn', 'audit sink writable again', { target: this.target, dropped: this.streakDropped, dropped_total: this.droppedCount });
      this.streakDropped = 0;
    }
  }

  dropped(): number {
    return this.droppedCount;
  }

  problem(): string | undefined {
    if (this.streakDropped > 0) return `audit sink blocked: ${this.streakDropped} events dropped`;
    return undefined;
  }

  /** Keep draining until empty or `timeoutMs`; what is left is dropped, counted and logged. */
  async close(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    this.drain();
    while (this.pending.length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      this.drain();
    }
    clearTimeout(this.retry);
    this.retry = undefined;
    if (this.pending.length > 0) {
      const lines = this.pending.reduce((a, b) => a + b.toString().split('\n').length - 1, 0);
      this.droppedCount += lines;
      log('error', 'audit sink closed with events unwritten', { target: this.target, dropped: lines, dropped_total: this.droppedCount });
      this.pending.length = 0;
      this.pendingBytes = 0;
    }
  }
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function createAuditSink(target: string | undefined, opts: AuditSinkOptions = {}): AuditSink {
  const maxBuffer = opts.maxBufferBytes ?? DEFAULT_AUDIT_BUFFER_BYTES;
  const closeTimeoutMs = opts.closeTimeoutMs ?? 2000;
  if (target === 'off') return { write: () => undefined, close: () => Promise.resolve(), dropped: () => 0, problem: () => undefined };
  let lines: AuditLineBuffer;
  let release: () => void;
  if (target === undefined || target === '' || target === '-' || target === 'stdout') {
    // process.stdout is asynchronous on a pipe: it would queue whatever it is given, without
    // limit, while the reader does not read. So a line is handed over only when the stream holds
    // nothing (the pipe took the last write); otherwise it waits in the bounded buffer.
    const out = process.stdout;
    lines = new AuditLineBuffer(
      'stdout',
      (chunk) => {
        if (out.writableLength > 0) return 0;
        out.write(chunk);
        return chunk.length;
      },
      // Lines from several processes on one pipe (cluster workers) never interleave: writes of
      // at most PIPE_BUF bytes to a pipe are atomic.
      maxBuffer,
      PIPE_BUF,
    );
    release = () => undefined;
  } else {
    // Non-blocking: a FIFO without a reader is refused now (ENXIO) rather than blocking the
    // start, and a write the FIFO or pipe cannot take returns EAGAIN rather than freezing the
    // event loop. Regular files ignore O_NONBLOCK. An unopenable file fails at start, not later.
    let fd: number;
    try {
      fd = openSync(target, fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | fsConstants.O_NONBLOCK, 0o640);
    } catch (err) {
      const why = errorCode(err) === 'ENXIO' ? 'no process is reading the FIFO (ENXIO)' : err instanceof Error ? err.message : String(err);
      throw new Error(`cannot open the audit log ${target}: ${why}`);
    }
    const pipe = fstatSync(fd).isFIFO();
    // A synchronous append, once per event-loop turn: a page-cache append costs a few µs, far
    // less than handing every batch to the libuv threadpool (a WriteStream: ~40 µs of CPU per
    // request on one core in bench:http).
    lines = new AuditLineBuffer(
      target,
      (chunk) => {
        try {
          return writeSync(fd, chunk);
        } catch (err) {
          if (errorCode(err) === 'EAGAIN') return 0;
          throw err;
        }
      },
      maxBuffer,
      pipe ? PIPE_BUF : Infinity,
    );
    release = () => closeSync(fd);
  }
  // The lines of one event-loop turn go out together: one write per batch, not per decision.
  const b = new TurnQueue<string>((batch) => lines.push(batch));
  let closed = false;
  return {
    write: (e) => {
      if (!closed) b.push(`${JSON.stringify(e)}\n`);
    },
    close: async () => {
      if (closed) return;
      closed = true;
      b.flush();
      await lines.close(closeTimeoutMs);
      release();
    },
    dropped: () => lines.dropped(),
    problem: () => lines.problem(),
  };
}

/** An in-memory sink (tests, embedding). */
export class MemoryAuditSink implements AuditSink {
  readonly events: AuditEvent[] = [];
  write(e: AuditEvent): void {
    this.events.push(e);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
let minLevel: LogLevel = (process.env['TRUSTPLANE_LOG_LEVEL'] as LogLevel | undefined) ?? 'info';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function setLogLevel(level: LogLevel): void {
  minLevel = level;
}

/** A structured log line on stderr. Never pass secrets in `fields`. */
export function log(level: LogLevel, msg: string, fields: Record<string, unknown> = {}): void {
  if (ORDER[level] < ORDER[minLevel]) return;
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
}

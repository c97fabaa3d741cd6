/**
 * Where audit events and logs go. Audit events (one JSON line per decision) go to stdout or an
 * append-only file; operational logs are JSON lines on stderr. Neither ever receives a passport,
 * a proof or a header value: events are built by core's allow-listing builder.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { AuditEvent } from '@trustplane/core';
import { TurnQueue } from './turn-queue.js';

export interface AuditSink {
  write(event: AuditEvent): void;
  close(): Promise<void>;
}

/**
 * Lines written in the same turn of the event loop go out as ONE write: one syscall per batch
 * instead of one per decision (a per-event write cost more than the verification itself). The
 * batch is flushed on the next turn (setImmediate) and on close, so nothing is lost on a
 * graceful shutdown; a line is never split.
 */
export class LineBatcher {
  private readonly queue: TurnQueue<string>;

  /**
   * `maxChunk`: for a pipe shared by several processes (cluster workers on one stdout), writes of
   * at most PIPE_BUF bytes are atomic, so lines are grouped into chunks no larger than that and
   * lines of different workers never interleave. Files opened O_APPEND need no limit.
   */
  constructor(out: (chunk: string) => void, maxChunk = Infinity) {
    this.queue = new TurnQueue<string>((lines) => {
      if (maxChunk === Infinity) return out(lines.join(''));
      let chunk = '';
      for (const line of lines) {
        if (chunk !== '' && Buffer.byteLength(chunk) + Buffer.byteLength(line) > maxChunk) {
          out(chunk);
          chunk = '';
        }
        chunk += line;
      }
      if (chunk !== '') out(chunk);
    });
  }

  push(line: string): void {
    this.queue.push(line);
  }

  flush(): void {
    this.queue.flush();
  }
}

/** POSIX PIPE_BUF on Linux: a pipe write of at most this many bytes is atomic. */
export const PIPE_BUF = 4096;

export function createAuditSink(target: string | undefined): AuditSink {
  if (target === undefined || target === '' || target === '-' || target === 'stdout') {
    const b = new LineBatcher((chunk) => void process.stdout.write(chunk), PIPE_BUF);
    return {
      write: (e) => b.push(`${JSON.stringify(e)}\n`),
      close: () => {
        b.flush();
        return Promise.resolve();
      },
    };
  }
  if (target === 'off') return { write: () => undefined, close: () => Promise.resolve() };
  // A synchronous append from the batcher, once per event-loop turn: a page-cache append costs a
  // few µs, far less than handing every batch to the libuv threadpool (a WriteStream: ~40 µs of
  // CPU per request on one core in bench:http). An unopenable file fails at start, not later.
  let fd: number;
  try {
    fd = openSync(target, 'a', 0o640);
  } catch (err) {
    throw new Error(`cannot open the audit log ${target}: ${err instanceof Error ? err.message : String(err)}`);
  }
  let failing = false;
  const b = new LineBatcher((chunk) => {
    let buf = Buffer.from(chunk);
    try {
      while (buf.length > 0) buf = buf.subarray(writeSync(fd, buf));
      failing = false;
    } catch (err) {
      // Reported once per failure streak, not once per batch.
      if (!failing) log('error', 'audit sink write failed', { error: err instanceof Error ? err.message : String(err) });
      failing = true;
    }
  });
  let closed = false;
  return {
    write: (e) => {
      if (!closed) b.push(`${JSON.stringify(e)}\n`);
    },
    close: () => {
      if (!closed) {
        closed = true;
        b.flush();
        closeSync(fd);
      }
      return Promise.resolve();
    },
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

/**
 * Where audit events and logs go. Audit events (one JSON line per decision) go to stdout or an
 * append-only file; operational logs are JSON lines on stderr. Neither ever receives a passport,
 * a proof or a header value: events are built by core's allow-listing builder.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { AuditEvent } from '@trustplane/core';

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
class LineBatcher {
  private lines: string[] = [];
  private scheduled = false;

  constructor(private readonly out: (chunk: string) => void) {}

  push(line: string): void {
    this.lines.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.lines.length === 0) return;
    const chunk = this.lines.join('');
    this.lines = [];
    this.out(chunk);
  };
}

export function createAuditSink(target: string | undefined): AuditSink {
  if (target === undefined || target === '' || target === '-' || target === 'stdout') {
    const b = new LineBatcher((chunk) => void process.stdout.write(chunk));
    return {
      write: (e) => b.push(`${JSON.stringify(e)}\n`),
      close: () => {
        b.flush();
        return Promise.resolve();
      },
    };
  }
  if (target === 'off') return { write: () => undefined, close: () => Promise.resolve() };
  const stream: WriteStream = createWriteStream(target, { flags: 'a', mode: 0o640 });
  stream.on('error', (err) => log('error', 'audit sink write failed', { error: err.message }));
  const b = new LineBatcher((chunk) => void stream.write(chunk));
  return {
    write: (e) => b.push(`${JSON.stringify(e)}\n`),
    close: () =>
      new Promise((resolve) => {
        b.flush();
        stream.end(resolve);
      }),
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

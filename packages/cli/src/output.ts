/**
 * Output and errors for the `trustplane` command. Every failure ends as ONE line on stderr,
 * `trustplane: <what went wrong>`, carrying the core error code when there is one, and an exit
 * code: 2 for usage errors, 1 for failures (an invalid token, a missing file, a bad input).
 */
import { FormatError, TrustPlaneError } from '@trustplane/core';

/** Where the command writes. The real bin uses process.stdout/stderr; tests capture it. */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export type ExitCode = typeof EXIT_OK | typeof EXIT_FAILURE | typeof EXIT_USAGE;

export const processIo: CliIo = {
  stdout: (text) => {
    process.stdout.write(text);
  },
  stderr: (text) => {
    process.stderr.write(text);
  },
};

/** An error the command reports itself: its message is the line after `trustplane: `. */
export class CliError extends Error {
  readonly exitCode: typeof EXIT_FAILURE | typeof EXIT_USAGE;

  constructor(message: string, exitCode: typeof EXIT_FAILURE | typeof EXIT_USAGE, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** The command line itself is wrong (exit 2). */
export function usageError(message: string): CliError {
  return new CliError(message, EXIT_USAGE);
}

/** The command ran and failed (exit 1). `code` is a stable snake_case code when there is one. */
export function failure(message: string, code?: string, cause?: unknown): CliError {
  return new CliError(code === undefined ? message : `${code}: ${message}`, EXIT_FAILURE, cause === undefined ? undefined : { cause });
}

/** The core error code of an error, when it has one. */
export function errorCode(err: unknown): string | undefined {
  if (err instanceof TrustPlaneError) return err.reason;
  if (err instanceof FormatError) return err.code;
  return undefined;
}

/** The human detail of a core error, without its `code: ` prefix. */
export function errorDetail(err: unknown): string {
  if (err instanceof TrustPlaneError) return err.detail;
  if (err instanceof FormatError) return err.message.startsWith(`${err.code}: `) ? err.message.slice(err.code.length + 2) : err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** One line, whatever the message holds (a message may quote user input with line breaks). */
export function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/**
 * The line for any error that reaches the top. Core errors already read `code: detail`; system
 * errors (ENOENT, EACCES…) carry their code in the message.
 */
export function describeError(err: unknown): string {
  if (err instanceof Error) return oneLine(err.message);
  return oneLine(String(err));
}

/** The one error line: `trustplane: <what went wrong>`. */
export function writeErrorLine(io: CliIo, message: string): void {
  io.stderr(`trustplane: ${oneLine(message)}\n`);
}

/** Pretty JSON, 2-space indent, one trailing newline. */
export function writeJson(io: CliIo, value: unknown): void {
  io.stdout(`${JSON.stringify(value, null, 2)}\n`);
}

/** `name: value` rows with the values aligned, for human output. */
export function writeRows(io: CliIo, rows: readonly (readonly [string, string])[]): void {
  const width = Math.max(...rows.map(([k]) => k.length)) + 1;
  for (const [k, v] of rows) io.stdout(`${`${k}:`.padEnd(width)} ${v}\n`);
}

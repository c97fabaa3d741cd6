/**
 * The `trustplane` command: one commander program, one file per verb under commands/, all the
 * logic in @trustplane/core. `main()` never calls process.exit: it returns the exit code, so
 * tests run it in-process and the bin sets process.exitCode (buffered output is never lost).
 *
 * Exit codes: 0 success · 1 failure (an invalid token, a bad key file, a transcript input
 * error…) · 2 usage error (commander's own included).
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { registerGenKey } from './commands/gen-key.js';
import { registerIssue } from './commands/issue.js';
import { registerSign } from './commands/sign.js';
import { registerVerify } from './commands/verify.js';
import { registerTranscript } from './commands/transcript.js';
import { registerBundle } from './commands/bundle/index.js';
import { registerAdapter } from './commands/adapter.js';
import { registerDemo } from './commands/demo.js';
import { registerBroker } from './commands/broker.js';
import { registerIssuer } from './commands/issuer.js';
import { registerUp } from './commands/up.js';
import { registerVerifier } from './commands/verifier.js';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE, describeError, processIo, writeErrorLine, type CliIo, type ExitCode } from './output.js';

/** The CLI package version, read at run time from packages/cli/package.json. */
export function cliVersion(): string {
  // dist/src/main.js → ../../package.json
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as unknown;
  const version = typeof pkg === 'object' && pkg !== null ? (pkg as { version?: unknown }).version : undefined;
  return typeof version === 'string' ? version : '0.0.0';
}

export function buildProgram(io: CliIo): Command {
  const program = new Command('trustplane');
  // Set before the subcommands are added: commander copies these settings into each of them.
  program
    .description('TrustPlane Auth: keys, passports, request signing, verification and transcripts')
    .version(cliVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout(text),
      writeErr: (text) => io.stderr(text),
      // Errors are reported once, by main(), as `trustplane: …`.
      outputError: () => undefined,
    });
  program.hook('preAction', (_program, action) => readBooleanEnv(action));
  registerGenKey(program, io);
  registerIssue(program, io);
  registerSign(program, io);
  registerVerify(program, io);
  registerTranscript(program, io);
  registerBundle(program, io);
  registerAdapter(program, io);
  registerVerifier(program, io);
  registerBroker(program, io);
  registerIssuer(program, io);
  registerUp(program, io);
  registerDemo(program, io, main);
  return program;
}

let stdoutGuarded = false;

/**
 * Output that cannot be written ends the command with one line, never a stack trace: a reader
 * that went away (`trustplane … | head -1`, EPIPE) ends it quietly with 141, as SIGPIPE would;
 * any other failure (a full disk: ENOSPC) is reported on stderr with exit code 1.
 */
function guardStdout(): void {
  if (stdoutGuarded) return;
  stdoutGuarded = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(141);
    process.stderr.write(`trustplane: cannot write the output: ${err.code ?? err.message}\n`);
    process.exit(EXIT_FAILURE);
  });
}

const ENV_TRUE = new Set(['1', 'true', 'yes', 'on']);
const ENV_FALSE = new Set(['0', 'false', 'no', 'off', '']);

/**
 * Commander turns a boolean flag on whenever its environment variable is SET, whatever its
 * value, so `TRUSTPLANE_DEV_ALLOW_UNSIGNED_BUNDLES=false` would have enabled it. The value is
 * read here instead: 1/true/yes/on is on, 0/false/no/off (or empty) is off, anything else is a
 * usage error.
 */
function readBooleanEnv(cmd: Command): void {
  for (const o of cmd.options) {
    if (o.envVar === undefined || o.required || o.optional || o.negate) continue;
    const name = o.attributeName();
    if (cmd.getOptionValueSource(name) !== 'env') continue;
    const raw = (process.env[o.envVar] ?? '').trim().toLowerCase();
    if (ENV_TRUE.has(raw)) continue;
    if (!ENV_FALSE.has(raw)) throw new CliError(`${o.envVar} must be 1, true, yes or on (or 0, false, no, off), got ${JSON.stringify(process.env[o.envVar]?.slice(0, 64))}`, EXIT_USAGE);
    cmd.setOptionValueWithSource(name, undefined, 'env');
  }
}

function commanderExit(err: CommanderError, io: CliIo): ExitCode {
  switch (err.code) {
    case 'commander.helpDisplayed':
    case 'commander.version':
      return EXIT_OK;
    case 'commander.help':
      // Help shown because no command was given: it went to stderr already.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    default:
      writeErrorLine(io, err.message.replace(/^error: /, ''));
      return EXIT_USAGE;
  }
}

/**
 * Run the command line `argv` (as process.argv: node, script, args…) and return the exit code.
 * Output goes to `io` (default: the process streams).
 */
export async function main(argv: readonly string[], io: CliIo = processIo): Promise<ExitCode> {
  if (io === processIo) guardStdout();
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'node' });
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) return commanderExit(err, io);
    writeErrorLine(io, describeError(err));
    return err instanceof CliError ? err.exitCode : EXIT_FAILURE;
  }
}

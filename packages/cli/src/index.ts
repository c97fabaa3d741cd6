/**
 * @trustplane/cli — the `trustplane` command. `main(argv, io)` runs it in-process and returns
 * the exit code; the bin (src/bin/trustplane.ts) is a one-line wrapper around it.
 */
export { main, buildProgram, cliVersion } from './main.js';
export { EXIT_OK, EXIT_FAILURE, EXIT_USAGE, type CliIo, type ExitCode } from './output.js';

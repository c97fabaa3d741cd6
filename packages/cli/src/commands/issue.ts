/**
 * `trustplane issue`: a self-issued software passport (SPEC §3) — what TrustPlane's Python
 * SDK `issue_passport` makes. Human output is the token alone, so `$(trustplane issue …)` works.
 */
import type { Command } from 'commander';
import { addIdentityOptions, issueSelfPassport, type IdentityOptions } from '../identity.js';
import { writeJson, type CliIo } from '../output.js';

interface IssueOptions extends IdentityOptions {
  json?: true;
}

export function registerIssue(program: Command, io: CliIo): void {
  const cmd = program.command('issue').description('Issue a self-issued software passport (compact JWS) and print it');
  addIdentityOptions(cmd)
    .option('--json', 'print JSON: {token, jti, iat, exp, kid}')
    .action((opts: IssueOptions) => {
      const { kid, passport } = issueSelfPassport(opts, io.stderr);
      if (opts.json === true) {
        writeJson(io, { token: passport.token, jti: passport.jti, iat: passport.iat, exp: passport.exp, kid });
        return;
      }
      io.stdout(`${passport.token}\n`);
    });
}

/**
 * `trustplane issuer serve | rotate | jwks` (serve is also `trustplane-issuer`): an issuer's keys
 * in a key directory, rotated on a timeline and published as JWKS with OpenID discovery
 * (docs/issuer.md). Private keys never leave the key directory: no output of these commands
 * holds one. Every flag can also come from TRUSTPLANE_ISSUER_<FLAG>.
 */
import { Option, type Command } from 'commander';
import { IssuerKeyring, issuerUrlProblem, startIssuer, type KeyringOptions } from '@trustplane/issuer';
import { failure, usageError, writeJson, type CliIo } from '../output.js';
import { parseHostPort, positiveInt } from './runtime.js';

interface KeyringFlags {
  keyDir: string;
  rotateEvery: string;
  prepublish: string;
  maxLifetime: string;
  skew: string;
}

interface ServeFlags extends KeyringFlags {
  issuer: string;
  publicUrl?: string;
  listen: string;
}

const env = (o: Option, name: string): Option => o.env(`TRUSTPLANE_ISSUER_${name}`);

function addKeyringOptions(cmd: Command): Command {
  return cmd
    .addOption(env(new Option('--key-dir <dir>', 'the key directory (created 0700 with a first key when empty; key files 0600)').makeOptionMandatory(), 'KEY_DIR'))
    .addOption(env(new Option('--rotate-every <seconds>', 'a signing key is replaced after this long').default('86400'), 'ROTATE_EVERY'))
    .addOption(env(new Option('--prepublish <seconds>', 'the next key is published this long before it signs').default('3600'), 'PREPUBLISH'))
    .addOption(env(new Option('--max-lifetime <seconds>', 'the longest passport lifetime verifiers accept; a retired key stays published this long + --skew').default('900'), 'MAX_LIFETIME'))
    .addOption(env(new Option('--skew <seconds>', 'the clock skew verifiers allow').default('30'), 'SKEW'));
}

function openKeyring(o: KeyringFlags, io: CliIo): IssuerKeyring {
  const opts: KeyringOptions = {
    rotateEverySeconds: positiveInt(o.rotateEvery, '--rotate-every'),
    prepublishSeconds: positiveInt(o.prepublish, '--prepublish', true),
    maxPassportLifetimeSeconds: positiveInt(o.maxLifetime, '--max-lifetime'),
    skewSeconds: positiveInt(o.skew, '--skew', true),
  };
  if (opts.rotateEverySeconds! <= opts.prepublishSeconds!) throw usageError('--rotate-every must be longer than --prepublish');
  let keyring: IssuerKeyring;
  try {
    keyring = IssuerKeyring.open(o.keyDir, opts);
  } catch (err) {
    throw failure(`cannot open --key-dir ${JSON.stringify(o.keyDir)}: ${err instanceof Error ? err.message : String(err)}`, 'issuer_key_dir', err);
  }
  if (keyring.createdKid !== undefined) {
    io.stderr(`trustplane issuer: ${keyring.dir} had no keys: created the first issuer key ${keyring.createdKid} (signs from now; private key file 0600)\n`);
  }
  return keyring;
}

function checkUrl(value: string | undefined, flag: string): void {
  const problem = value === undefined ? undefined : issuerUrlProblem(value);
  if (problem !== undefined) throw usageError(`${flag} ${JSON.stringify(value)} ${problem}`);
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

export function registerIssuer(program: Command, io: CliIo): void {
  const issuer = program.command('issuer').description('The issuer service: keys with rotation, published as JWKS with OpenID discovery (docs/issuer.md)');

  const serve = addKeyringOptions(issuer.command('serve').description('Serve /.well-known/jwks.json and /.well-known/openid-configuration; rotate keys on schedule (also `trustplane-issuer`)'))
    .addOption(env(new Option('--issuer <url>', 'the issuer (the passports\' iss): https, or http on loopback').makeOptionMandatory(), 'ISSUER'))
    .addOption(env(new Option('--public-url <url>', 'public base URL of this service for jwks_uri (default: --issuer)'), 'PUBLIC_URL'))
    .addOption(env(new Option('--listen <host:port>', 'address to serve on (put TLS in front)').default('127.0.0.1:8443'), 'LISTEN'));
  serve.action(async (o: ServeFlags) => {
    const { log } = await import('@trustplane/adapter');
    const listen = parseHostPort(o.listen, '--listen');
    checkUrl(o.issuer, '--issuer');
    checkUrl(o.publicUrl, '--public-url');
    const keyring = openKeyring(o, io);
    const svc = await startIssuer({ listen, issuer: o.issuer, keyring, ...(o.publicUrl !== undefined ? { publicUrl: o.publicUrl } : {}), onLog: (level, msg, fields) => log(level, msg, fields) }).catch((err: unknown) => {
      throw failure(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
    });
    io.stderr(`trustplane issuer: serving ${svc.url}/.well-known/jwks.json (jwks_uri ${svc.jwksUri}); signing key ${keyring.signingKey().kid}\n`);
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log('info', 'shutting down', { signal });
        void svc.close().then(resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
  });

  addKeyringOptions(issuer.command('rotate').description('Publish the next key now; it signs after --prepublish seconds (a running service picks it up)'))
    .option('--json', 'print the new key\'s timeline entry as JSON')
    .action((o: KeyringFlags & { json?: true }) => {
      const keyring = openKeyring(o, io);
      const next = keyring.rotate();
      if (o.json === true) writeJson(io, next);
      else io.stdout(`next key ${next.kid} published; it signs from ${iso(next.activates_at)}\n`);
    });

  addKeyringOptions(issuer.command('jwks').description('Print the published keys as a JWK Set (RFC 7517/8037), e.g. to pin them in trust material')).action((o: KeyringFlags) => {
    writeJson(io, openKeyring(o, io).jwks());
  });
}

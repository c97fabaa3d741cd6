/**
 * `trustplane issuer serve | rotate | jwks` (serve is also `trustplane-issuer`): an issuer's keys
 * in a key directory, rotated on a timeline and published as JWKS with OpenID discovery
 * (docs/issuer.md). Private keys never leave the key directory.
 */
import { Option, type Command } from 'commander';
import { IssuerKeyring, startIssuer, type KeyringOptions } from '@trustplane/issuer';
import { failure, usageError, writeJson, type CliIo } from '../output.js';
import { parseHostPort, positiveInt } from './runtime.js';

interface KeyringFlags {
  keyDir: string;
  rotateEvery: string;
  prepublish: string;
  maxLifetime: string;
  skew: string;
}

function addKeyringOptions(cmd: Command): Command {
  const env = (o: Option, name: string) => o.env(`TRUSTPLANE_ISSUER_${name}`);
  return cmd
    .addOption(env(new Option('--key-dir <dir>', 'the key directory (created 0700; keys 0600)').makeOptionMandatory(), 'KEY_DIR'))
    .addOption(env(new Option('--rotate-every <seconds>', 'replace the signing key after this long').default('86400'), 'ROTATE_EVERY'))
    .addOption(env(new Option('--prepublish <seconds>', 'publish the next key this long before it signs').default('3600'), 'PREPUBLISH'))
    .addOption(env(new Option('--max-lifetime <seconds>', 'the longest passport lifetime verifiers accept (retired keys stay published this long + skew)').default('900'), 'MAX_LIFETIME'))
    .addOption(env(new Option('--skew <seconds>', 'the clock skew verifiers allow').default('30'), 'SKEW'));
}

function openKeyring(o: KeyringFlags): IssuerKeyring {
  const opts: KeyringOptions = {
    rotateEverySeconds: positiveInt(o.rotateEvery, '--rotate-every'),
    prepublishSeconds: positiveInt(o.prepublish, '--prepublish', true),
    maxPassportLifetimeSeconds: positiveInt(o.maxLifetime, '--max-lifetime'),
    skewSeconds: positiveInt(o.skew, '--skew', true),
  };
  if (opts.rotateEverySeconds! <= opts.prepublishSeconds!) throw usageError('--rotate-every must be longer than --prepublish');
  try {
    return IssuerKeyring.open(o.keyDir, opts);
  } catch (err) {
    throw failure(`cannot open --key-dir ${JSON.stringify(o.keyDir)}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export function registerIssuer(program: Command, io: CliIo): void {
  const issuer = program.command('issuer').description('An issuer service: keys with rotation, published as JWKS with OpenID discovery');

  const serve = addKeyringOptions(issuer.command('serve').description('Serve /.well-known/jwks.json and /.well-known/openid-configuration; rotate keys on schedule'))
    .addOption(new Option('--issuer <url>', 'the issuer (passport iss), e.g. https://issuer.acme.example').env('TRUSTPLANE_ISSUER_ISSUER').makeOptionMandatory())
    .addOption(new Option('--public-url <url>', 'public base URL for jwks_uri (default: --issuer)').env('TRUSTPLANE_ISSUER_PUBLIC_URL'))
    .addOption(new Option('--listen <host:port>', 'address to serve on').env('TRUSTPLANE_ISSUER_LISTEN').default('127.0.0.1:8443'));
  serve.action(async (o: KeyringFlags & { issuer: string; publicUrl?: string; listen: string }) => {
    const listen = parseHostPort(o.listen, '--listen');
    try {
      new URL(o.publicUrl ?? o.issuer);
    } catch {
      throw usageError(`--issuer ${JSON.stringify(o.issuer)} is not a URL (or give --public-url)`);
    }
    const keyring = openKeyring(o);
    const { log } = await import('@trustplane/adapter');
    const svc = await startIssuer({ listen, issuer: o.issuer, keyring, ...(o.publicUrl !== undefined ? { publicUrl: o.publicUrl } : {}), onLog: (level, msg, fields) => log(level, msg, fields) }).catch((err: unknown) => {
      throw failure(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
    });
    io.stderr(`trustplane issuer: serving ${svc.url}/.well-known/jwks.json (jwks_uri ${svc.jwksUri}); signing key ${keyring.signingKey().kid}\n`);
    await new Promise<void>((resolve) => {
      const stop = () => void svc.close().then(resolve);
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
  });

  addKeyringOptions(issuer.command('rotate').description('Publish the next key now; it signs after --prepublish seconds'))
    .option('--json', 'print JSON')
    .action((o: KeyringFlags & { json?: true }) => {
      const keyring = openKeyring(o);
      const next = keyring.rotate();
      if (o.json === true) writeJson(io, next);
      else io.stdout(`next key ${next.kid} published; it signs from ${new Date(next.activates_at * 1000).toISOString()}\n`);
    });

  addKeyringOptions(issuer.command('jwks').description('Print the published keys as a JWK Set (RFC 7517/8037)')).action((o: KeyringFlags) => {
    writeJson(io, openKeyring(o).jwks());
  });
}

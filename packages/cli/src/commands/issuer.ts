/**
 * `trustplane issuer serve | rotate | jwks` (serve is also `trustplane-issuer`): an issuer's keys
 * in a key directory, rotated on a timeline and published as JWKS with OpenID discovery
 * (docs/issuer.md). Private keys never leave the key directory: no output of these commands
 * holds one. Every flag can also come from TRUSTPLANE_ISSUER_<FLAG>.
 */
import { Option, type Command } from 'commander';
import { IssuerKeyring, issuerUrlProblem, startIssuer, type KeyringSettings, type RotateResult } from '@trustplane/issuer';
import { failure, usageError, writeJson, type CliIo } from '../output.js';
import { parseHostPort, positiveInt } from './runtime.js';

/** Settings flags: given to `serve` (with defaults); to `rotate` and `jwks` only to check them. */
interface KeyringFlags {
  keyDir: string;
  rotateEvery?: string;
  prepublish?: string;
  maxLifetime?: string;
  skew?: string;
}

interface ServeFlags extends KeyringFlags {
  issuer: string;
  publicUrl?: string;
  listen: string;
}

/**
 * The shortest --prepublish `serve` and `rotate` accept. The service serves the JWKS with
 * max-age = prepublish / 2, but a TrustPlane verifier caches a JWKS for at least 60 s whatever
 * max-age says (JwksTrustSource's floor): below 120 s a verifier could learn the next key only
 * after it starts signing, and refuse its first passports.
 */
const MIN_PREPUBLISH_SECONDS = 120;

/** flag attribute, flag, keyring setting, `serve` default, whether 0 is allowed. */
const SETTINGS_FLAGS = [
  ['rotateEvery', '--rotate-every', 'rotateEverySeconds', '86400', false],
  ['prepublish', '--prepublish', 'prepublishSeconds', '3600', true],
  ['maxLifetime', '--max-lifetime', 'maxPassportLifetimeSeconds', '900', false],
  ['skew', '--skew', 'skewSeconds', '30', true],
] as const;

const env = (o: Option, name: string): Option => o.env(`TRUSTPLANE_ISSUER_${name}`);

/** `serve` sets the directory's settings (defaults apply); `rotate` and `jwks` use the recorded ones. */
function addKeyringOptions(cmd: Command, serve: boolean): Command {
  const keyDir = serve ? 'the key directory (created 0700 with a first key when new or empty; key files 0600)' : 'the key directory; it must hold keys (only `issuer serve` creates them)';
  const help = {
    rotateEvery: 'a signing key is replaced after this long',
    prepublish: `the next key is published this long before it signs (at least ${MIN_PREPUBLISH_SECONDS})`,
    maxLifetime: 'the longest passport lifetime verifiers accept; a retired key stays published this long + --skew',
    skew: 'the clock skew verifiers allow',
  };
  cmd.addOption(env(new Option('--key-dir <dir>', keyDir).makeOptionMandatory(), 'KEY_DIR'));
  for (const [attr, flag, , dflt] of SETTINGS_FLAGS) {
    const name = flag.slice(2).toUpperCase().replace(/-/g, '_');
    const o = new Option(`${flag} <seconds>`, serve ? `${help[attr]}; recorded in keyring.json` : 'must equal the value `issuer serve` recorded in keyring.json (default: that value)');
    cmd.addOption(env(serve ? o.default(dflt) : o, name));
  }
  return cmd;
}

/** The settings flags given (all of them for `serve`, which has defaults), each checked on its own. */
function settingsFlags(o: KeyringFlags, checkPrepublish: boolean): Partial<Record<keyof KeyringSettings, number>> {
  const out: Partial<Record<keyof KeyringSettings, number>> = {};
  for (const [attr, flag, key, , allowZero] of SETTINGS_FLAGS) {
    const v = o[attr];
    if (v !== undefined) out[key] = positiveInt(v, flag, allowZero);
  }
  if (checkPrepublish && out.prepublishSeconds !== undefined && out.prepublishSeconds < MIN_PREPUBLISH_SECONDS) {
    throw usageError(`--prepublish must be at least ${MIN_PREPUBLISH_SECONDS} s, got ${out.prepublishSeconds}: verifiers cache the JWKS for at least 60 s, so a shorter window can let the next key sign before they know it`);
  }
  return out;
}

function keyDirFailure(o: KeyringFlags, err: unknown) {
  return failure(`cannot open --key-dir ${JSON.stringify(o.keyDir)}: ${err instanceof Error ? err.message : String(err)}`, 'issuer_key_dir', err);
}

/** `serve`: open (create) the directory and record this service's settings there. */
function openOwnKeyring(o: KeyringFlags, io: CliIo): IssuerKeyring {
  const settings = settingsFlags(o, true);
  if (settings.rotateEverySeconds! <= settings.prepublishSeconds!) throw usageError('--rotate-every must be longer than --prepublish');
  let keyring: IssuerKeyring;
  try {
    keyring = IssuerKeyring.open(o.keyDir, { ...settings, create: true });
  } catch (err) {
    throw keyDirFailure(o, err);
  }
  if (keyring.createdKid !== undefined) {
    io.stderr(`trustplane issuer: ${keyring.dir} had no keys: created the first issuer key ${keyring.createdKid} (signs from now; private key file 0600)\n`);
  }
  const before = keyring.replacedSettings;
  if (before !== undefined) {
    const changed = SETTINGS_FLAGS.filter(([, , key]) => before[key] !== keyring.settings[key]).map(([, flag, key]) => `${flag} ${before[key]} → ${keyring.settings[key]}`);
    io.stderr(`trustplane issuer: settings recorded in ${keyring.dir}/keyring.json changed: ${changed.join(', ')}\n`);
  }
  return keyring;
}

/**
 * `rotate`, `jwks`: open a directory that holds keys (never create one: a mistyped --key-dir must
 * not become a new issuer identity) with the settings its service recorded. A settings flag given
 * anyway must equal the recorded value — a one-shot rotation with its own, shorter, retention
 * would unpublish the old key while passports it signed are still valid.
 */
function openExistingKeyring(o: KeyringFlags, checkPrepublish: boolean): IssuerKeyring {
  const given = settingsFlags(o, checkPrepublish);
  let keyring: IssuerKeyring;
  try {
    keyring = IssuerKeyring.open(o.keyDir, { create: false });
  } catch (err) {
    throw keyDirFailure(o, err);
  }
  for (const [, flag, key] of SETTINGS_FLAGS) {
    const v = given[key];
    if (v !== undefined && v !== keyring.settings[key]) {
      throw usageError(`${flag} ${v} differs from ${keyring.settings[key]}, recorded in ${keyring.dir}/keyring.json by \`trustplane issuer serve\`: leave it out (the recorded settings apply) or change it on the service`);
    }
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

  const serve = addKeyringOptions(issuer.command('serve').description('Serve /.well-known/jwks.json and /.well-known/openid-configuration; rotate keys on schedule (also `trustplane-issuer`)'), true)
    .addOption(env(new Option('--issuer <url>', 'the issuer (the passports\' iss): https, or http on loopback').makeOptionMandatory(), 'ISSUER'))
    .addOption(env(new Option('--public-url <url>', 'public base URL of this service for jwks_uri (default: --issuer)'), 'PUBLIC_URL'))
    .addOption(env(new Option('--listen <host:port>', 'address to serve on (put TLS in front)').default('127.0.0.1:8443'), 'LISTEN'));
  serve.action(async (o: ServeFlags) => {
    const { log } = await import('@trustplane/adapter');
    const listen = parseHostPort(o.listen, '--listen');
    checkUrl(o.issuer, '--issuer');
    checkUrl(o.publicUrl, '--public-url');
    const keyring = openOwnKeyring(o, io);
    const svc = await startIssuer({ listen, issuer: o.issuer, keyring, ...(o.publicUrl !== undefined ? { publicUrl: o.publicUrl } : {}), onLog: (level, msg, fields) => log(level, msg, fields) }).catch((err: unknown) => {
      throw failure(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
    });
    // Signal handlers before the line that says we are up: a SIGTERM sent on reading it must find them.
    const stopped = new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log('info', 'shutting down', { signal });
        void svc.close().then(resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    io.stderr(`trustplane issuer: serving ${svc.url}/.well-known/jwks.json (jwks_uri ${svc.jwksUri}); signing key ${keyring.signingKey().kid}\n`);
    await stopped;
  });

  addKeyringOptions(issuer.command('rotate').description('Publish the next key now; it signs after the recorded --prepublish seconds (a running service picks it up)'), false)
    .option('--json', 'print the next key\'s timeline entry as JSON, with already_published')
    .action((o: KeyringFlags & { json?: true }) => {
      const keyring = openExistingKeyring(o, true);
      let next: RotateResult;
      try {
        next = keyring.rotate();
      } catch (err) {
        throw failure(`cannot rotate in --key-dir ${JSON.stringify(o.keyDir)}: ${err instanceof Error ? err.message : String(err)}`, 'issuer_key_dir', err);
      }
      const { alreadyPublished, ...entry } = next;
      if (o.json === true) writeJson(io, { ...entry, already_published: alreadyPublished });
      else if (alreadyPublished) io.stdout(`next key ${entry.kid} already published; it signs from ${iso(entry.activates_at)} (no new key created)\n`);
      else io.stdout(`next key ${entry.kid} published; it signs from ${iso(entry.activates_at)}\n`);
    });

  addKeyringOptions(issuer.command('jwks').description('Print the published keys as a JWK Set (RFC 7517/8037), e.g. to pin them in trust material'), false).action((o: KeyringFlags) => {
    writeJson(io, openExistingKeyring(o, false).jwks());
  });
}

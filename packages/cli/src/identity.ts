/**
 * The options `issue` and `sign` share: the software identity that self-issues a passport
 * (SPEC §3) — the key file, issuer, subject, audience, trust domain, kid and lifetime.
 */
import { Option, type Command } from 'commander';
import { DEFAULT_MAX_LIFETIME_SECONDS, DEFAULT_PASSPORT_TTL_SECONDS, issuePassport, type Ed25519PrivateKey, type IssuedPassport } from '@trustplane/core';
import { defaultKid, loadPrivateKey } from './files.js';
import { parseNonEmpty, parsePositiveInt, parseText } from './options.js';

export interface IdentityOptions {
  privateKey: string;
  issuer: string;
  subject: string;
  audience: string;
  trustDomain: string;
  kid?: string;
  ttl: number;
}

export function addIdentityOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--private-key <file>', 'private key file (base64url of seed ‖ public key, as gen-key writes it)').argParser(parseNonEmpty).makeOptionMandatory())
    .addOption(new Option('--issuer <issuer>', 'passport iss').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--subject <subject>', 'passport sub').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--audience <audience>', 'passport aud: the audience of the API').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--trust-domain <domain>', 'passport trust_domain').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--kid <kid>', "issuer key id in the passport header (default: key- + first 16 hex characters of the key's fingerprint)").argParser(parseText))
    .addOption(new Option('--ttl <seconds>', 'passport lifetime in seconds, a positive integer').argParser(parsePositiveInt).default(DEFAULT_PASSPORT_TTL_SECONDS));
}

export interface SelfIssued {
  readonly key: Ed25519PrivateKey;
  readonly kid: string;
  readonly passport: IssuedPassport;
}

/**
 * Load the key and issue a fresh self-issued software passport (new jti) for now. A lifetime
 * longer than verifiers accept by default is still issued (a verifier may be configured for it),
 * with a warning through `warn`: by default it would be denied `passport_lifetime_exceeded`.
 */
export function issueSelfPassport(opts: IdentityOptions, warn: (line: string) => void, now: number = Date.now()): SelfIssued {
  const key = loadPrivateKey(opts.privateKey);
  if (opts.ttl > DEFAULT_MAX_LIFETIME_SECONDS) {
    warn(`trustplane: warning: --ttl ${opts.ttl} is longer than verifiers accept by default (${DEFAULT_MAX_LIFETIME_SECONDS} s): one without a longer --max-lifetime denies this passport passport_lifetime_exceeded\n`);
  }
  const kid = opts.kid ?? defaultKid(key.publicKey);
  const passport = issuePassport({
    signingKey: key,
    kid,
    issuer: opts.issuer,
    subject: opts.subject,
    audience: opts.audience,
    trustDomain: opts.trustDomain,
    ttlSeconds: opts.ttl,
    now,
  });
  return { key, kid, passport };
}

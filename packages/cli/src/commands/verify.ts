/**
 * `trustplane verify`: check a passport offline against one issuer public key — parse (the
 * algorithm allow-list first), signature, claims and time window, then the optional expected
 * audience, issuer and trust domain. Valid: exit 0 and the claims. Invalid: exit 1 and the
 * reason code (SPEC §9.2 names).
 */
import { Option, type Command } from 'commander';
import {
  DEFAULT_MAX_LIFETIME_SECONDS,
  DEFAULT_SKEW_SECONDS,
  FormatError,
  TrustPlaneError,
  parsePassport,
  parsePublicKey,
  validatePassportClaims,
  verifyPassportSignature,
  type PassportClaims,
  type PassportHeader,
} from '@trustplane/core';
import { parseNonNegativeInt, parsePositiveInt, parseText } from '../options.js';
import { errorCode, errorDetail, failure, oneLine, writeJson, type CliIo } from '../output.js';

interface VerifyOptions {
  token: string;
  publicKey: string;
  audience?: string;
  issuer?: string;
  trustDomain?: string;
  skew: number;
  maxLifetime: number;
  json?: true;
}

function verifyToken(opts: VerifyOptions, nowMs: number): { header: PassportHeader; claims: PassportClaims } {
  let token = opts.token.trim();
  if (token.startsWith('Bearer ')) token = token.slice('Bearer '.length).trim();
  const parsed = parsePassport(token);
  const key = parsePublicKey(opts.publicKey);
  if (!verifyPassportSignature(parsed, key)) {
    throw new TrustPlaneError('invalid_passport_signature', `passport signature (kid ${parsed.header.kid.slice(0, 128)}) does not verify with the given public key`);
  }
  const claims = validatePassportClaims(parsed.payload, { nowMs, skewSeconds: opts.skew, maxLifetimeSeconds: opts.maxLifetime });
  if (opts.audience !== undefined && claims.aud !== opts.audience) {
    throw new TrustPlaneError('audience_mismatch', `passport audience ${JSON.stringify(claims.aud)} is not ${JSON.stringify(opts.audience)}`);
  }
  if (opts.issuer !== undefined && claims.iss !== opts.issuer) {
    throw new TrustPlaneError('issuer_key_mismatch', `passport issuer ${JSON.stringify(claims.iss)} is not ${JSON.stringify(opts.issuer)}`);
  }
  if (opts.trustDomain !== undefined && claims.trust_domain !== opts.trustDomain) {
    throw new TrustPlaneError('trust_domain_mismatch', `passport trust domain ${JSON.stringify(claims.trust_domain)} is not ${JSON.stringify(opts.trustDomain)}`);
  }
  return { header: parsed.header, claims };
}

export function registerVerify(program: Command, io: CliIo): void {
  program
    .command('verify')
    .description("Verify a passport's signature, claims and time window with an issuer public key")
    .requiredOption('--token <passport>', 'the compact JWS passport')
    .requiredOption('--public-key <b64url>', 'the issuer public key: base64url of the raw 32 bytes')
    .addOption(new Option('--audience <audience>', 'expected aud (else audience_mismatch)').argParser(parseText))
    .addOption(new Option('--issuer <issuer>', 'expected iss (else issuer_key_mismatch)').argParser(parseText))
    .addOption(new Option('--trust-domain <domain>', 'expected trust_domain (else trust_domain_mismatch)').argParser(parseText))
    .addOption(new Option('--skew <seconds>', 'allowed clock skew in seconds').argParser(parseNonNegativeInt).default(DEFAULT_SKEW_SECONDS))
    .addOption(new Option('--max-lifetime <seconds>', 'maximum passport lifetime exp - iat in seconds').argParser(parsePositiveInt).default(DEFAULT_MAX_LIFETIME_SECONDS))
    .option('--json', 'print JSON: {valid, kid, claims} or {valid:false, reason, detail}')
    .action((opts: VerifyOptions) => {
      let result: { header: PassportHeader; claims: PassportClaims };
      try {
        result = verifyToken(opts, Date.now());
      } catch (err) {
        const reason = errorCode(err);
        if (reason === undefined || !(err instanceof TrustPlaneError || err instanceof FormatError)) throw err;
        const detail = oneLine(errorDetail(err));
        if (opts.json === true) writeJson(io, { valid: false, reason, detail });
        // The stderr line, for humans and logs; exit 1.
        throw failure(`${reason}: ${detail}`, 'invalid', err);
      }
      if (opts.json === true) writeJson(io, { valid: true, kid: result.header.kid, claims: result.claims });
      else writeJson(io, result.claims);
    });
}

/**
 * `trustplane sign`: the headers for one request (SPEC §2) — a fresh self-issued passport, a
 * fresh nonce, and a proof over the transcript of the method, URL, signed headers and body.
 * Prints every header to send (the caller's, the five TrustPlane headers and our
 * `X-TrustPlane-Signed-Headers` extension, SPEC §9.1) as JSON, or a ready curl command.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import {
  HEADER_AUTHORIZATION,
  HEADER_BODY_SHA256,
  HEADER_NONCE,
  HEADER_PROOF,
  HEADER_SIGNED_HEADERS,
  HEADER_TRANSCRIPT_SHA256,
  signRequest,
  type HeaderEntry,
} from '@trustplane/core';
import { addIdentityOptions, issueSelfPassport, type IdentityOptions } from '../identity.js';
import { collectHeader, isToken, parseHeaderNames, parseNonEmpty, parseText } from '../options.js';
import { failure, usageError, writeJson, type CliIo } from '../output.js';

interface SignOptions extends IdentityOptions {
  routeId: string;
  method: string;
  url: string;
  header?: HeaderEntry[];
  data?: string;
  dataFile?: string;
  signedHeaders?: string[];
  curl?: true;
  json?: true;
}

/** Headers the signer sets; a caller's --header may not supply them. */
const RESERVED = new Set([HEADER_AUTHORIZATION, HEADER_TRANSCRIPT_SHA256, HEADER_PROOF, HEADER_NONCE, HEADER_BODY_SHA256, HEADER_SIGNED_HEADERS].map((n) => n.toLowerCase()));

/** POSIX shell single-quoting: safe for any string (a `'` becomes `'\''`). */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, "'\\''")}'`;
}

function collectNames(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...parseHeaderNames(value)];
}

function parseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw usageError(`--url ${JSON.stringify(raw)} is not an absolute URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw usageError(`--url must be http or https, not ${url.protocol.replace(/:$/, '')}`);
  if (url.username !== '' || url.password !== '') throw usageError('--url must not carry credentials (the Authorization header carries the passport)');
  // A fragment is never sent.
  url.hash = '';
  return url;
}

interface CurlInput {
  method: string;
  url: URL;
  headers: Readonly<Record<string, string>>;
  callerHasContentType: boolean;
  data?: string;
  dataFile?: string;
}

/** A single-line curl command that sends exactly the signed request. */
export function curlCommand(c: CurlInput): string {
  const parts = ['curl', '-sS'];
  // curl -X HEAD waits for a body that never comes; -I sends HEAD properly.
  if (c.method === 'HEAD') parts.push('-I');
  else parts.push('-X', c.method);
  // [] and {} in a URL are curl globs unless globbing is off.
  if (/[[\]{}]/.test(c.url.href)) parts.push('--globoff');
  parts.push(shellQuote(c.url.href));
  for (const [name, value] of Object.entries(c.headers)) {
    // `-H 'Name:'` would REMOVE the header in curl; `Name;` sends it empty.
    parts.push('-H', shellQuote(value === '' ? `${name};` : `${name}: ${value}`));
  }
  const hasBody = c.data !== undefined || c.dataFile !== undefined;
  // With a body curl adds `Content-Type: application/x-www-form-urlencoded` unless told not to;
  // send only what was signed.
  if (hasBody && !c.callerHasContentType) parts.push('-H', shellQuote('Content-Type:'));
  if (c.dataFile !== undefined) parts.push('--data-binary', shellQuote(`@${path.resolve(c.dataFile)}`));
  else if (c.data !== undefined) parts.push(c.data.startsWith('@') ? '--data-raw' : '--data-binary', shellQuote(c.data));
  return parts.join(' ');
}

export function registerSign(program: Command, io: CliIo): void {
  const cmd = program.command('sign').description('Sign one request: print every header to send (JSON), or a curl command');
  addIdentityOptions(cmd)
    .addOption(new Option('--route-id <id>', 'the route id the verifier serves this request as').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--method <method>', 'HTTP method').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--url <url>', 'absolute URL as it will be sent').argParser(parseNonEmpty).makeOptionMandatory())
    .addOption(new Option('--header <header>', "a request header 'Name: value' (repeatable)").argParser(collectHeader))
    .addOption(new Option('--data <string>', 'request body (UTF-8)').conflicts('dataFile'))
    .addOption(new Option('--data-file <file>', 'request body: the bytes of this file').argParser(parseNonEmpty).conflicts('data'))
    .addOption(
      new Option('--signed-headers <names>', 'more header names to sign, comma-separated (x-trustplane-nonce, and content-type when present, are always signed)').argParser(collectNames),
    )
    .option('--curl', 'print a ready curl command instead of the headers')
    .option('--json', 'print JSON: the headers object ({"headers", "curl"} with --curl)')
    .action((opts: SignOptions) => {
      const method = opts.method.toUpperCase();
      if (!isToken(method)) throw usageError(`--method ${JSON.stringify(opts.method)} is not an HTTP method`);
      const url = parseUrl(opts.url);
      const callerHeaders = opts.header ?? [];
      const seen = new Set<string>();
      for (const h of callerHeaders) {
        const lower = h.name.toLowerCase();
        if (RESERVED.has(lower)) throw usageError(`--header ${h.name} is set by trustplane sign`);
        if (seen.has(lower)) throw usageError(`--header ${h.name} is given more than once`);
        seen.add(lower);
      }
      let body: Buffer | undefined;
      if (opts.dataFile !== undefined) {
        try {
          body = readFileSync(opts.dataFile);
        } catch (err) {
          throw failure(`cannot read --data-file ${JSON.stringify(opts.dataFile)}: ${err instanceof Error ? err.message : String(err)}`, undefined, err);
        }
      } else if (opts.data !== undefined) {
        body = Buffer.from(opts.data, 'utf8');
      }
      const signedNames = ['x-trustplane-nonce', ...(seen.has('content-type') ? ['content-type'] : []), ...(opts.signedHeaders ?? [])];

      const { key, passport } = issueSelfPassport(opts, io.stderr);
      const signed = signRequest({
        passport: passport.token,
        privateKey: key,
        method,
        url,
        routeId: opts.routeId,
        headers: callerHeaders,
        ...(body !== undefined ? { body } : {}),
        signedHeaders: signedNames,
      });
      // Object.fromEntries defines own properties, so even a header named __proto__ is data.
      const headers: Record<string, string> = Object.fromEntries([
        ...callerHeaders.map((h) => [h.name, h.value] as const),
        ...Object.entries(signed.headers),
        [HEADER_SIGNED_HEADERS, signed.signedHeaders.join(',')],
      ]);

      if (opts.curl !== true) {
        writeJson(io, headers);
        return;
      }
      const curl = curlCommand({
        method,
        url,
        headers,
        callerHasContentType: seen.has('content-type'),
        ...(opts.data !== undefined ? { data: opts.data } : {}),
        ...(opts.dataFile !== undefined ? { dataFile: opts.dataFile } : {}),
      });
      if (opts.json === true) writeJson(io, { headers, curl });
      else io.stdout(`${curl}\n`);
    });
}

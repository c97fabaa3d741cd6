/**
 * `trustplane transcript --vector FILE`: rebuild transcript-v1 (SPEC §1) from a request in the
 * conformance vector format (conformance/vectors/v1/transcript-v1.json). Only the inputs are
 * read — `raw_request` {query, body_utf8 | body_b64, headers} and the `transcript` fields
 * method, scheme, authority, path, audience, route_id, content_encoding, headers.allow_list,
 * passport_jti, nonce, issued_at, key_binding. Every derived field (normalized query, selected
 * header hashes, body hash, time bucket) is recomputed, and any `canonical` part is ignored.
 */
import { Option, type Command } from 'commander';
import { buildTranscript, isJsonObject, parseJsonBytes, type HeaderEntry, type JsonObject, type JsonValue } from '@trustplane/core';
import { readFileCapped } from '../files.js';
import { parseNonEmpty } from '../options.js';
import { failure, writeJson, type CliIo } from '../output.js';

/** Vector files are small; refuse anything over 1 MiB before parsing. */
export const MAX_VECTOR_BYTES = 1024 * 1024;

interface TranscriptOptions {
  vector: string;
  json?: true;
}

const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function missing(field: string): Error {
  return failure(`vector field ${field} is missing`, 'missing_vector_field');
}

function invalid(field: string, what: string): Error {
  return failure(`vector field ${field} ${what}`, 'invalid_vector_field');
}

function objectField(parent: JsonObject, key: string, field: string): JsonObject {
  const v = parent[key];
  if (v === undefined) throw missing(field);
  if (!isJsonObject(v)) throw invalid(field, 'is not an object');
  return v;
}

function stringField(parent: JsonObject, key: string, field: string): string {
  const v = parent[key];
  if (v === undefined) throw missing(field);
  if (typeof v !== 'string') throw invalid(field, 'is not a string');
  return v;
}

function arrayField(parent: JsonObject, key: string, field: string): JsonValue[] {
  const v = parent[key];
  if (v === undefined) throw missing(field);
  if (!Array.isArray(v)) throw invalid(field, 'is not an array');
  return v;
}

/** Standard base64 (RFC 4648 §4, padded), strictly: it must round-trip. */
function decodeStdBase64(value: string, field: string): Buffer {
  if (!STD_BASE64.test(value)) throw invalid(field, 'is not standard base64');
  const bytes = Buffer.from(value, 'base64');
  if (bytes.toString('base64') !== value) throw invalid(field, 'is not canonical base64');
  return bytes;
}

function readBody(raw: JsonObject): Buffer {
  const hasUtf8 = raw['body_utf8'] !== undefined;
  const hasB64 = raw['body_b64'] !== undefined;
  if (hasUtf8 && hasB64) throw invalid('raw_request.body_utf8', 'and raw_request.body_b64 are both present; give one');
  if (hasB64) return decodeStdBase64(stringField(raw, 'body_b64', 'raw_request.body_b64'), 'raw_request.body_b64');
  if (!hasUtf8) throw missing('raw_request.body_utf8 (or raw_request.body_b64)');
  return Buffer.from(stringField(raw, 'body_utf8', 'raw_request.body_utf8'), 'utf8');
}

function readHeaders(raw: JsonObject): HeaderEntry[] {
  return arrayField(raw, 'headers', 'raw_request.headers').map((h, i) => {
    const field = `raw_request.headers[${i}]`;
    if (!isJsonObject(h)) throw invalid(field, 'is not an object');
    return { name: stringField(h, 'name', `${field}.name`), value: stringField(h, 'value', `${field}.value`) };
  });
}

/** Rebuild the transcript from a parsed vector document. */
export function transcriptFromVector(doc: JsonValue): { lines: string[]; sha256: string } {
  if (!isJsonObject(doc)) throw invalid('(document)', 'is not a JSON object');
  const raw = objectField(doc, 'raw_request', 'raw_request');
  const t = objectField(doc, 'transcript', 'transcript');
  const headersIn = objectField(t, 'headers', 'transcript.headers');
  const allowList = arrayField(headersIn, 'allow_list', 'transcript.headers.allow_list').map((n, i) => {
    if (typeof n !== 'string') throw invalid(`transcript.headers.allow_list[${i}]`, 'is not a string');
    return n;
  });
  const issuedAt = t['issued_at'];
  if (issuedAt === undefined) throw missing('transcript.issued_at');
  if (typeof issuedAt !== 'number' || !Number.isSafeInteger(issuedAt)) throw invalid('transcript.issued_at', 'is not an integer');

  const transcript = buildTranscript({
    method: stringField(t, 'method', 'transcript.method'),
    scheme: stringField(t, 'scheme', 'transcript.scheme'),
    authority: stringField(t, 'authority', 'transcript.authority'),
    path: stringField(t, 'path', 'transcript.path'),
    rawQuery: stringField(raw, 'query', 'raw_request.query'),
    audience: stringField(t, 'audience', 'transcript.audience'),
    routeId: stringField(t, 'route_id', 'transcript.route_id'),
    contentEncoding: stringField(t, 'content_encoding', 'transcript.content_encoding'),
    body: readBody(raw),
    headers: readHeaders(raw),
    headerAllowList: allowList,
    passportJti: stringField(t, 'passport_jti', 'transcript.passport_jti'),
    nonce: stringField(t, 'nonce', 'transcript.nonce'),
    issuedAt,
    keyBinding: stringField(t, 'key_binding', 'transcript.key_binding'),
  });
  return { lines: [...transcript.lines], sha256: transcript.sha256 };
}

export function registerTranscript(program: Command, io: CliIo): void {
  program
    .command('transcript')
    .description('Rebuild transcript-v1 from a request in the conformance vector format; prints {lines, sha256}')
    .addOption(new Option('--vector <file>', 'vector file (JSON, at most 1 MiB)').argParser(parseNonEmpty).makeOptionMandatory())
    .option('--json', 'print JSON (the output is always JSON)')
    .action((opts: TranscriptOptions) => {
      const bytes = readFileCapped(opts.vector, MAX_VECTOR_BYTES, '--vector');
      // Strict JSON: duplicate keys, unsafe integers and invalid UTF-8 are refused (invalid_json).
      const doc = parseJsonBytes(bytes, MAX_VECTOR_BYTES, 'vector file');
      writeJson(io, transcriptFromVector(doc));
    });
}

/**
 * `trustplane bundle inspect FILE`: a readable summary of a trust material or policy bundle —
 * version, signer and signature, routes with their freshness class and sources, issuers and
 * keys, revocations, and the age of the signature and of the file. `--public-key` also checks
 * the signature; `--json` prints the same as JSON.
 */
import { statSync } from 'node:fs';
import { Option, type Command } from 'commander';
import {
  FRESHNESS_CLASSES,
  decodeBase64url,
  documentContentSha256,
  fingerprint,
  isUnsignedDocument,
  validatePolicyBundle,
  validateTrustMaterial,
  type JsonObject,
  type PolicyBundle,
  type TrustMaterial,
} from '@trustplane/core';
import { writeJson, type CliIo } from '../../output.js';
import { collect, documentType, humanAge, parsePublicKeys, readDocument } from './io.js';
import { verifyWithKeys } from './verify.js';

interface InspectOptions {
  publicKey?: string[];
  json?: true;
}

function freshnessOf(cls: string, max: number | undefined): { freshness_class: string; max_staleness_seconds: number | null; fails_closed: boolean; text: string } {
  const base = { freshness_class: cls, max_staleness_seconds: max ?? null };
  if (!FRESHNESS_CLASSES.includes(cls)) return { ...base, fails_closed: true, text: `UNKNOWN class ${cls}: every request fails closed (bundle_freshness_unknown)` };
  if (cls === 'bounded') {
    if (max === undefined || !(max > 0)) return { ...base, fails_closed: true, text: 'bounded WITHOUT a positive max_staleness_seconds: fails closed' };
    return { ...base, fails_closed: false, text: `bounded, bundle at most ${max} s since last confirmed` };
  }
  if (cls === 'realtime') return { ...base, fails_closed: false, text: "realtime, bundle confirmed within the verifier's window (default 5 s)" };
  return { ...base, fails_closed: false, text: 'offline-ok, never stale-denied' };
}

function signatureInfo(doc: JsonObject, keys: ReturnType<typeof parsePublicKeys>): { status: string; detail: string } {
  if (keys.length > 0) {
    const r = verifyWithKeys(doc, keys, undefined);
    return r.ok ? { status: 'valid', detail: 'valid with the given --public-key' } : { status: 'invalid', detail: `${r.code}: ${r.detail}` };
  }
  if (isUnsignedDocument(doc)) return { status: 'unsigned', detail: 'UNSIGNED skeleton: a loader refuses it (unless --dev-allow-unsigned-bundles)' };
  return { status: 'not_checked', detail: 'not checked (pass --public-key B64URL to verify)' };
}

export function registerBundleInspect(bundle: Command, io: CliIo): void {
  bundle
    .command('inspect')
    .description('Summarize a trust material or policy bundle: version, signer, routes, sources, freshness, age')
    .argument('<file>', 'the trust material or policy bundle')
    .addOption(new Option('--public-key <b64url>', 'also verify the signature with this bundle-signing key (repeatable)').argParser(collect))
    .option('--json', 'print the summary as JSON')
    .action((file: string, opts: InspectOptions) => {
      const doc = readDocument(file, 'FILE');
      const type = documentType(doc, file);
      if (type === 'trust_material') validateTrustMaterial(doc, file);
      else validatePolicyBundle(doc, file);
      const keys = parsePublicKeys(opts.publicKey ?? []);
      const now = Date.now();
      const st = statSync(file);
      const by = doc['signed_by'] as { issuer?: string; kid?: string; alg?: string; signed_at?: string } | undefined;
      const sigFormat = (doc['signature'] as { format?: string } | undefined)?.format;
      const signedAtMs = by?.signed_at === undefined ? undefined : Date.parse(by.signed_at);
      const signature = signatureInfo(doc, keys);
      const summary: Record<string, unknown> = {
        file,
        type,
        version: doc['version'],
        content_sha256: documentContentSha256(doc),
        signer: by === undefined ? null : { issuer: by.issuer ?? null, kid: by.kid ?? null, alg: by.alg ?? null, signed_at: by.signed_at ?? null },
        signature: { format: sigFormat ?? null, status: signature.status, detail: signature.detail },
        signed_age_seconds: signedAtMs === undefined ? null : Math.round((now - signedAtMs) / 1000),
        file_bytes: st.size,
        file_modified_at: new Date(st.mtimeMs).toISOString(),
        file_age_seconds: Math.round((now - st.mtimeMs) / 1000),
      };
      const lines: string[] = [];
      const row = (k: string, v: string): void => {
        lines.push(`${`${k}:`.padEnd(14)} ${v}`);
      };
      row('file', `${file} (${st.size} bytes, modified ${summary['file_modified_at'] as string}, ${humanAge(now - st.mtimeMs)} ago)`);

      if (type === 'policy_bundle') {
        const b = doc as unknown as PolicyBundle;
        const defaultFc = b.default_freshness_class ?? 'bounded';
        const routes = b.route_groups.flatMap((g) =>
          g.routes.map((r) => ({
            route_id: r.route_id,
            route_group_id: g.route_group_id,
            api_id: g.api_id,
            method: r.method,
            path_template: r.path_template,
            required_key_binding: r.required_key_binding ?? b.default_required_key_binding ?? 'software',
            freshness: freshnessOf(r.freshness_class ?? defaultFc, r.max_staleness_seconds ?? b.default_max_staleness_seconds),
            sources: r.allowed_sources.map((s) => ({
              source_type: s.source_type,
              issuer: s.issuer,
              trust_domain: s.trust_domain,
              subject: s.subject_exact !== undefined ? `= ${s.subject_exact}` : `${s.subject_prefix ?? ''}*`,
              required_key_binding: s.required_key_binding ?? null,
              context_policy: s.context_policy !== undefined,
              provenance_policy: s.provenance_policy !== undefined,
            })),
          })),
        );
        Object.assign(summary, {
          policy_id: b.policy_id ?? null,
          policy_version: b.policy_version ?? 0,
          trust_material_sha256: b['trust_material_sha256'] ?? null,
          defaults: { required_key_binding: b.default_required_key_binding ?? null, freshness_class: b.default_freshness_class ?? null, max_staleness_seconds: b.default_max_staleness_seconds ?? null },
          apis: b.apis,
          routes,
          revocations: b.revocations ?? [],
        });
        row('type', 'policy bundle (trustplane-bundle-v1)');
        row('policy', `${b.policy_id ?? '(no policy_id)'} version ${b.policy_version ?? 0}`);
        const pin = b['trust_material_sha256'];
        row('pinned to', typeof pin === 'string' ? `trust material content ${pin.slice(0, 16)}…` : 'no trust material pin');
        row('signer', by === undefined ? 'none' : `kid ${by.kid ?? '?'}, issuer ${by.issuer ?? '?'}, ${by.alg ?? '?'} (${sigFormat ?? '?'})`);
        row('signed at', signedAtMs === undefined || Number.isNaN(signedAtMs) ? 'not recorded' : `${by!.signed_at!} (${humanAge(now - signedAtMs)} ago)`);
        row('signature', signature.detail);
        row('defaults', `key binding ${b.default_required_key_binding ?? 'software (implicit)'}; freshness ${b.default_freshness_class ?? 'bounded (implicit)'}${b.default_max_staleness_seconds === undefined ? '' : `, max ${b.default_max_staleness_seconds} s`}`);
        for (const a of b.apis) row('api', `${a.api_id}: ${a.base_url} (audience ${a.audience})`);
        row('routes', String(routes.length));
        for (const r of routes) {
          lines.push(`  ${r.route_id}  ${r.method} ${r.path_template}  min ${r.required_key_binding}  ${r.freshness.text}  ${r.sources.length} source(s)`);
          for (const s of r.sources) {
            const extras = [s.required_key_binding === null ? '' : `min ${s.required_key_binding}`, s.context_policy ? 'context policy' : '', s.provenance_policy ? 'provenance policy' : ''].filter((x) => x !== '');
            lines.push(`    ${s.source_type}  ${s.issuer}  ${s.trust_domain}  subject ${s.subject}${extras.length === 0 ? '' : `  (${extras.join(', ')})`}`);
          }
        }
        row('revocations', String((b.revocations ?? []).length));
        for (const r of b.revocations ?? []) lines.push(`  ${[r.kid === undefined ? '' : `kid ${r.kid}`, r.issuer === undefined ? '' : `issuer ${r.issuer}`, r.subject === undefined ? '' : `subject ${r.subject}`, r.jti === undefined ? '' : `jti ${r.jti}`, r.revoked_at ?? '', r.reason ?? ''].filter((x) => x !== '').join('  ')}`);
      } else {
        const t = doc as unknown as TrustMaterial;
        const issuers = t.issuers.map((i) => ({
          issuer: i.issuer,
          trust_domain: i.trust_domain,
          source_type: i.source_type,
          keys: i.keys.map((k) => ({ kid: k.kid, status: k.status ?? 'active', fingerprint: fingerprint(decodeBase64url(k.public_key_b64url, 43)) })),
        }));
        Object.assign(summary, { issuers, revocations: t.revocations ?? [] });
        row('type', 'trust material (trustplane-trust-material-v1)');
        row('content', `sha256 ${(summary['content_sha256'] as string).slice(0, 16)}… (what a policy bundle pins)`);
        row('signer', by === undefined ? 'none' : `kid ${by.kid ?? '?'}, issuer ${by.issuer ?? '?'}, ${by.alg ?? '?'} (${sigFormat ?? '?'})`);
        row('signed at', signedAtMs === undefined || Number.isNaN(signedAtMs) ? 'not recorded' : `${by!.signed_at!} (${humanAge(now - signedAtMs)} ago)`);
        row('signature', signature.detail);
        row('issuers', String(issuers.length));
        for (const i of issuers) {
          lines.push(`  ${i.issuer}  ${i.trust_domain}  ${i.source_type}`);
          for (const k of i.keys) lines.push(`    kid ${k.kid}  ${k.status}  ${k.fingerprint.slice(0, 23)}…`);
        }
        row('revocations', String((t.revocations ?? []).length));
      }
      if (opts.json === true) writeJson(io, summary);
      else io.stdout(`${lines.join('\n')}\n`);
    });
}

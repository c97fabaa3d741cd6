/**
 * Audit events `trustplane-auth-audit-event-v0.1` (SPEC §5): one per decision, allow and deny.
 * Built from an allow-list of fields only, so a passport, a proof or a header value can never
 * reach an audit sink; strings are length-capped and stripped of control characters.
 */
import { randomUUID } from 'node:crypto';

export const AUDIT_EVENT_VERSION = 'trustplane-auth-audit-event-v0.1';

export type AuditComponent = 'adapter' | 'verifier' | 'broker';

export interface AuditEvent {
  version: typeof AUDIT_EVENT_VERSION;
  occurred_at: string;
  component: AuditComponent;
  outcome: 'allow' | 'deny';
  accepted: boolean;
  reason_code: string;
  detail_reason: string;
  event_id?: string;
  request_id?: string;
  route_id?: string;
  audience?: string;
  issuer?: string;
  subject?: string;
  jti?: string;
  key_binding?: string;
  required_key_binding?: string;
  transcript_sha256?: string;
  policy_id?: string;
  policy_version?: number;
  source_profile?: string;
  source_spiffe_id?: string;
  /** Extension: peer credentials of a broker client (uid/gid/pid), or `unsupported`. */
  peer?: { uid?: number; gid?: number; pid?: number } | 'unsupported';
}

export const OPTIONAL_AUDIT_STRING_FIELDS = [
  'request_id',
  'route_id',
  'audience',
  'issuer',
  'subject',
  'jti',
  'key_binding',
  'required_key_binding',
  'transcript_sha256',
  'policy_id',
  'source_profile',
  'source_spiffe_id',
] as const;

export type AuditFields = Partial<Record<(typeof OPTIONAL_AUDIT_STRING_FIELDS)[number], string | undefined>> & {
  component: AuditComponent;
  accepted: boolean;
  reason_code: string;
  detail_reason: string;
  occurredAtMs: number;
  policy_version?: number | undefined;
  peer?: AuditEvent['peer'] | undefined;
};

const MAX_FIELD = 512;

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function clean(value: string): string {
  if (value.length <= MAX_FIELD && !CONTROL.test(value)) return value; // the common case: nothing to do
  // eslint-disable-next-line no-control-regex
  const s = value.replace(/[\u0000-\u001f\u007f]/g, '?');
  return s.length > MAX_FIELD ? `${s.slice(0, MAX_FIELD)}…` : s;
}

/** The ISO form of the last timestamp: events in the same millisecond share it. */
let lastMs = NaN;
let lastIso = '';
function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
}

export function buildAuditEvent(fields: AuditFields): AuditEvent {
  const event: AuditEvent = {
    version: AUDIT_EVENT_VERSION,
    occurred_at: isoTime(fields.occurredAtMs),
    component: fields.component,
    outcome: fields.accepted ? 'allow' : 'deny',
    accepted: fields.accepted,
    reason_code: clean(fields.reason_code),
    detail_reason: clean(fields.detail_reason),
    event_id: randomUUID(),
  };
  for (const key of OPTIONAL_AUDIT_STRING_FIELDS) {
    const v = fields[key];
    if (typeof v === 'string' && v !== '') event[key] = clean(v);
  }
  if (fields.policy_version !== undefined) event.policy_version = fields.policy_version;
  if (fields.peer !== undefined) event.peer = fields.peer;
  return event;
}

/** The audit event for a verifier decision (allow or deny). */
export function auditEventForDecision(
  decision: {
    allowed: boolean;
    reason: string;
    detail?: string;
    routeId?: string;
    audience?: string;
    issuer?: string;
    subject?: string;
    jti?: string;
    keyBinding?: string;
    requiredKeyBinding?: string;
    transcriptSha256?: string;
    policyId?: string;
    policyVersion?: number;
    claims?: { provenance?: { profile: string; spiffe_id?: string } };
  },
  opts: { component: AuditComponent; occurredAtMs: number; requestId?: string },
): AuditEvent {
  return buildAuditEvent({
    component: opts.component,
    accepted: decision.allowed,
    reason_code: decision.reason,
    detail_reason: decision.detail ?? (decision.allowed ? 'request verified' : ''),
    occurredAtMs: opts.occurredAtMs,
    request_id: opts.requestId,
    route_id: decision.routeId,
    audience: decision.audience,
    issuer: decision.issuer,
    subject: decision.subject,
    jti: decision.jti,
    key_binding: decision.keyBinding,
    required_key_binding: decision.requiredKeyBinding,
    transcript_sha256: decision.transcriptSha256,
    policy_id: decision.policyId,
    policy_version: decision.policyVersion,
    source_profile: decision.claims?.provenance?.profile,
    source_spiffe_id: decision.claims?.provenance?.spiffe_id,
  });
}

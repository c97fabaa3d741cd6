/**
 * SPIFFE IDs (SPIFFE-ID spec §2): `spiffe://<trust-domain><path>`, parsed strictly, and the
 * selector that narrows which IDs the broker accepts.
 */

export interface SpiffeIdSelector {
  exact?: string;
  prefix?: string;
}

export interface SpiffeId {
  readonly id: string;
  readonly trustDomain: string;
  /** '' for a trust-domain ID, else '/seg/seg…'. */
  readonly path: string;
}

/** SPIFFE-ID spec §2.3: a URI is at most 2048 bytes; §2.1: a trust domain at most 255. */
const MAX_ID_LENGTH = 2048;
const MAX_TRUST_DOMAIN_LENGTH = 255;
const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;
const SCHEME_PREFIX = 'spiffe://';

/** Why `s` is not a valid trust domain name, or null. */
export function trustDomainProblem(s: string): string | null {
  if (s.length === 0) return 'empty trust domain';
  if (s.length > MAX_TRUST_DOMAIN_LENGTH) return 'trust domain longer than 255 characters';
  if (!TRUST_DOMAIN_RE.test(s)) return 'trust domain has characters outside [a-z0-9._-]';
  return null;
}

/**
 * Parses a SPIFFE ID, or returns the reason it is not one. The character sets exclude '%',
 * ':', '@', '?', '#', upper case in the trust domain, so percent-encoding, ports, userinfo,
 * queries and fragments all fail here.
 */
export function parseSpiffeId(s: string): SpiffeId | string {
  if (s.length > MAX_ID_LENGTH) return 'SPIFFE ID longer than 2048 bytes';
  if (!s.startsWith(SCHEME_PREFIX)) return 'scheme is not spiffe://';
  const rest = s.slice(SCHEME_PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem !== null) return tdProblem;
  if (path !== '') {
    for (const seg of path.slice(1).split('/')) {
      if (seg === '') return 'path has an empty segment';
      if (seg === '.' || seg === '..') return 'path has a dot segment';
      if (!SEGMENT_RE.test(seg)) return 'path has characters outside [A-Za-z0-9._-]';
    }
  }
  return { id: s, trustDomain, path };
}

/**
 * Checks a selector against the configured trust domain; throws `TypeError` (configuration is
 * programmer input). A prefix may end in '/'; it matches whole path segments only.
 */
export function checkSelector(selector: SpiffeIdSelector | undefined, trustDomain: string): void {
  if (selector === undefined) return;
  const { exact, prefix } = selector;
  if (exact !== undefined && prefix !== undefined) throw new TypeError('SPIFFE ID selector: give exact or prefix, not both');
  const value = exact ?? prefix;
  if (value === undefined) return;
  const parsed = parseSpiffeId(prefix !== undefined && value.endsWith('/') ? value.slice(0, -1) : value);
  if (typeof parsed === 'string') throw new TypeError(`SPIFFE ID selector ${JSON.stringify(value)}: ${parsed}`);
  if (parsed.trustDomain !== trustDomain) {
    throw new TypeError(`SPIFFE ID selector ${JSON.stringify(value)} is outside trust domain ${trustDomain}`);
  }
}

/** Whether `id` (already parsed and in the trust domain) passes the selector. */
export function selectorMatches(selector: SpiffeIdSelector | undefined, id: string): boolean {
  if (selector === undefined) return true;
  if (selector.exact !== undefined) return id === selector.exact;
  if (selector.prefix !== undefined) {
    const p = selector.prefix.endsWith('/') ? selector.prefix.slice(0, -1) : selector.prefix;
    return id === p || id.startsWith(`${p}/`);
  }
  return true;
}

export function describeSelector(selector: SpiffeIdSelector | undefined): string {
  if (selector?.exact !== undefined) return `exactly ${selector.exact}`;
  if (selector?.prefix !== undefined) return `under ${selector.prefix}`;
  return 'any ID';
}

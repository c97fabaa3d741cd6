/**
 * A client of the SPIFFE Workload API (SPIFFE_Workload_API.md): holds one
 * `FetchX509SVID` server stream open on the agent's Unix socket, validates every X.509-SVID the
 * agent pushes (svid.ts), and keeps the last valid one. Only a fully valid SVID replaces the
 * current one; an invalid push is reported and ignored; a broken stream keeps the last valid
 * SVID until it expires and reconnects with exponential backoff.
 *
 * The private key the agent sends (`x509_svid_key`) is never used: its bytes are overwritten with
 * zeros as soon as a response arrives (best effort; gRPC's own buffers are out of reach) and
 * never appear in events, statuses or errors.
 */
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { FormatError } from '@trustplane/core';
import { MAX_CERT_DATA_BYTES, splitConcatenatedDer } from './der.js';
import { describeSelector, parseSpiffeId, selectorMatches, type SpiffeIdSelector } from './spiffe-id.js';
import { checkSvidConfig, validateX509SvidDetailed, type SvidFailure, type SvidFailureCode, type SvidIdentity, type SvidStatus, type ValidatedSvid } from './svid.js';

export interface WorkloadApiX509SourceEvent {
  type: 'svid_updated' | 'svid_rejected' | 'stream_error';
  detail: string;
  identity?: SvidIdentity;
}

export interface WorkloadApiX509SourceOptions {
  /** A filesystem path, or "unix:///path" / "unix:/path" as in SPIFFE_ENDPOINT_SOCKET. */
  socketPath: string;
  trustDomain: string;
  selector?: SpiffeIdSelector;
  /** Milliseconds since the epoch; default Date.now. */
  now?: () => number;
  /** Backoff after the stream fails; defaults 500 / 30000 ms. */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  onEvent?: (e: WorkloadApiX509SourceEvent) => void;
}

/** Workload API metadata every request must carry (SPIFFE_Workload_Endpoint.md §4). */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';
/** At most this many SVIDs in one response. */
export const MAX_SVIDS_PER_RESPONSE = 32;
const MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024;
const DEFAULT_READY_TIMEOUT_MS = 10_000;

/** The Workload API proto shipped in this package (dist/src/spiffe/ → packages/broker/proto/). */
export const WORKLOAD_API_PROTO_PATH = fileURLToPath(new URL('../../../proto/workload.proto', import.meta.url));

let clientCtor: grpc.ServiceClientConstructor | undefined;

function workloadApiClient(): grpc.ServiceClientConstructor {
  if (clientCtor === undefined) {
    const def = protoLoader.loadSync(WORKLOAD_API_PROTO_PATH, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
    clientCtor = grpc.loadPackageDefinition(def)['SpiffeWorkloadAPI'] as grpc.ServiceClientConstructor;
  }
  return clientCtor;
}

/**
 * Normalises a Workload API endpoint to an absolute socket path: "unix:///path", "unix:/path",
 * or a filesystem path (resolved against the working directory). TCP endpoints are not
 * supported; anything else is a TypeError.
 */
export function parseWorkloadApiSocket(endpoint: string): string {
  if (endpoint.length === 0 || endpoint.includes('\0')) throw new TypeError('Workload API socket: empty or contains NUL');
  let path: string;
  if (endpoint.startsWith('unix:')) {
    const rest = endpoint.startsWith('unix://') ? endpoint.slice('unix://'.length) : endpoint.slice('unix:'.length);
    if (!rest.startsWith('/')) throw new TypeError(`Workload API socket ${JSON.stringify(endpoint)}: a unix: address needs an absolute path and no authority`);
    if (/[?#]/.test(rest)) throw new TypeError(`Workload API socket ${JSON.stringify(endpoint)}: query and fragment are not allowed`);
    path = rest;
  } else if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(endpoint)) {
    throw new TypeError(`Workload API socket ${JSON.stringify(endpoint)}: only unix: addresses or filesystem paths are supported`);
  } else {
    path = resolvePath(endpoint);
  }
  return path;
}

function fail(code: SvidFailureCode, detail: string): SvidFailure {
  return { ok: false, code, detail };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/** Overwrites every `x509_svid_key` in a decoded response with zeros. */
function wipeKeys(resp: unknown): void {
  if (!isRecord(resp) || !Array.isArray(resp['svids'])) return;
  for (const s of resp['svids'] as unknown[]) {
    if (isRecord(s) && s['x509_svid_key'] instanceof Uint8Array) s['x509_svid_key'].fill(0);
  }
}

function bytesField(v: unknown): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array(0);
}

export class WorkloadApiX509Source {
  private readonly target: string;
  private readonly trustDomain: string;
  private readonly selector: SpiffeIdSelector | undefined;
  private readonly now: () => number;
  private readonly minMs: number;
  private readonly maxMs: number;
  private readonly onEvent: ((e: WorkloadApiX509SourceEvent) => void) | undefined;

  private current: ValidatedSvid | null = null;
  private lastFailure: SvidFailure | null = null;
  private settled = false;
  private closed = false;
  private streamUp = false;
  private attempt = 0;
  private client: grpc.Client | null = null;
  private call: grpc.ClientReadableStream<unknown> | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** Responses and stream failures are handled one at a time, in arrival order. */
  private queue: Promise<void> = Promise.resolve();
  private readonly waiters = new Set<() => void>();

  /** Starts the FetchX509SVID stream. Throws TypeError on bad options. */
  constructor(opts: WorkloadApiX509SourceOptions) {
    checkSvidConfig(opts.trustDomain, opts.selector);
    this.target = `unix:${parseWorkloadApiSocket(opts.socketPath)}`;
    this.trustDomain = opts.trustDomain;
    this.selector = opts.selector === undefined ? undefined : { ...opts.selector };
    this.now = opts.now ?? Date.now;
    this.minMs = opts.reconnectMinMs ?? 500;
    this.maxMs = opts.reconnectMaxMs ?? 30_000;
    if (!(this.minMs > 0) || !(this.maxMs >= this.minMs)) throw new TypeError('reconnectMinMs must be > 0 and reconnectMaxMs >= reconnectMinMs');
    this.onEvent = opts.onEvent;
    this.connect();
  }

  /** The current SVID re-validated against now() (an SVID that expired since it arrived is reported as svid_expired). Never throws. */
  status(): SvidStatus {
    try {
      const cur = this.current;
      if (cur === null) return this.lastFailure ?? fail('svid_unavailable', 'no X.509-SVID received from the Workload API yet');
      const now = this.now();
      const down = this.streamUp ? '' : ' (the Workload API stream is down)';
      if (!(now <= cur.validUntilMs)) {
        return fail('svid_expired', `X.509-SVID ${cur.identity.spiffeId} (or its chain) expired at ${new Date(cur.validUntilMs).toISOString()}${down}`);
      }
      if (now < cur.validFromMs) {
        return fail('svid_not_yet_valid', `X.509-SVID ${cur.identity.spiffeId} is not valid before ${new Date(cur.validFromMs).toISOString()}`);
      }
      return { ok: true, identity: { ...cur.identity } };
    } catch {
      return fail('svid_unavailable', 'the clock failed');
    }
  }

  /**
   * Resolves with status() once the source has settled: at once if an update (accepted or
   * rejected) or a stream error has already happened, else at the first one; or with
   * svid_unavailable after timeoutMs.
   */
  ready(timeoutMs = DEFAULT_READY_TIMEOUT_MS): Promise<SvidStatus> {
    if (this.settled || this.closed) return Promise.resolve(this.status());
    return new Promise((resolve) => {
      const waiter = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve(this.status());
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        resolve(fail('svid_unavailable', `no answer from the Workload API within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.call?.cancel();
    this.client?.close();
    this.call = null;
    this.client = null;
    this.streamUp = false;
    await this.queue;
    this.current = null;
    this.lastFailure = fail('svid_unavailable', 'the source is closed');
    for (const w of [...this.waiters]) w();
  }

  private emit(e: WorkloadApiX509SourceEvent): void {
    try {
      this.onEvent?.(e);
    } catch {
      // A listener's failure must not break the source.
    }
  }

  private settle(): void {
    this.settled = true;
    for (const w of [...this.waiters]) w();
  }

  private enqueue(step: () => Promise<void> | void): void {
    this.queue = this.queue.then(step).catch(() => undefined);
  }

  private connect(): void {
    if (this.closed) return;
    this.reconnectTimer = null;
    const Ctor = workloadApiClient();
    const client = new Ctor(this.target, grpc.credentials.createInsecure(), {
      // A fresh channel per attempt with its own subchannel, so our backoff, not a shared
      // subchannel's, decides when the next attempt happens.
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': MAX_RECEIVE_MESSAGE_BYTES,
      'grpc.initial_reconnect_backoff_ms': this.minMs,
      'grpc.max_reconnect_backoff_ms': this.maxMs,
    });
    const metadata = new grpc.Metadata();
    metadata.set(WORKLOAD_API_HEADER, 'true');
    const fetch = client['FetchX509SVID'] as (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<unknown>;
    const call = fetch.call(client, {}, metadata);
    this.client = client;
    this.call = call;
    let done = false;
    const down = (detail: string, withdrawn = false): void => {
      if (done) return;
      done = true;
      client.close();
      if (this.call === call) {
        this.call = null;
        this.client = null;
      }
      this.enqueue(() => {
        // PERMISSION_DENIED: the agent says this workload has no identity (any more). The SVID
        // held so far is withdrawn at once, not kept until it expires.
        this.streamDown(detail);
        if (withdrawn) this.withdraw(detail);
      });
    };
    call.on('data', (resp: unknown) => {
      wipeKeys(resp);
      if (done) return;
      this.streamUp = true;
      this.attempt = 0;
      this.enqueue(() => this.handleResponse(resp));
    });
    call.on('error', (err: Partial<grpc.ServiceError>) => {
      const code = typeof err.code === 'number' ? (grpc.status[err.code] ?? String(err.code)) : 'UNKNOWN';
      // grpc-js appends an empty "Resolution note:" to connection failures; keep the useful part.
      const details = typeof err.details === 'string' ? err.details.replace(/\s*Resolution note:\s*$/, '').slice(0, 200) : '';
      down(`Workload API stream failed: ${code}${details === '' ? '' : `: ${details}`}`, err.code === grpc.status.PERMISSION_DENIED);
    });
    call.on('end', () => down('the Workload API ended the stream'));
  }

  private streamDown(detail: string): void {
    if (this.closed) return;
    this.streamUp = false;
    if (this.current === null) this.lastFailure = fail('svid_unavailable', detail);
    this.emit({ type: 'stream_error', detail });
    this.settle();
    const ceiling = Math.min(this.maxMs, this.minMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    // Equal jitter: between half and all of the ceiling.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
    this.reconnectTimer.unref();
  }

  private async handleResponse(resp: unknown): Promise<void> {
    let result: ValidatedSvid | SvidFailure;
    try {
      result = await this.evaluate(resp);
    } catch (err) {
      // evaluate() throws only on an internal failure (e.g. the injected clock); report it
      // without breaking the stream.
      result = fail('svid_unavailable', `could not validate the update: ${err instanceof Error ? err.message.slice(0, 200) : 'unexpected failure'}`);
    }
    if (this.closed) return;
    if (result.ok) {
      this.current = result;
      this.lastFailure = null;
      this.emit({ type: 'svid_updated', detail: `accepted X.509-SVID ${result.identity.spiffeId}`, identity: { ...result.identity } });
    } else if (result.code === 'svid_unavailable' && isRecord(resp) && Array.isArray(resp['svids']) && resp['svids'].length === 0) {
      // An update with no SVID at all: the workload is no longer entitled to one. Unlike a
      // malformed or invalid update (the last good SVID keeps serving until it expires), this
      // withdraws the identity now.
      this.withdraw(result.detail);
    } else {
      if (this.current === null) this.lastFailure = result;
      this.emit({ type: 'svid_rejected', detail: `${result.code}: ${result.detail}` });
    }
    this.settle();
  }

  /** The agent withdrew this workload's identity: nothing is granted until a new SVID comes. */
  private withdraw(detail: string): void {
    const had = this.current;
    this.current = null;
    this.lastFailure = fail('svid_unavailable', `identity withdrawn by the Workload API: ${detail}`);
    if (had !== null) this.emit({ type: 'svid_rejected', detail: `withdrawn X.509-SVID ${had.identity.spiffeId}: ${detail}` });
  }

  /** Picks the SVID for our trust domain and selector from one response and validates it. */
  private async evaluate(resp: unknown): Promise<ValidatedSvid | SvidFailure> {
    if (!isRecord(resp) || !Array.isArray(resp['svids'])) return fail('svid_malformed', 'response has no svids list');
    const svids = resp['svids'] as unknown[];
    if (svids.length === 0) return fail('svid_unavailable', 'the Workload API sent no X.509-SVID');
    if (svids.length > MAX_SVIDS_PER_RESPONSE) return fail('svid_malformed', `response carries more than ${MAX_SVIDS_PER_RESPONSE} SVIDs`);

    let certBytes = 0;
    for (const s of svids) {
      if (!isRecord(s)) return fail('svid_malformed', 'response has a non-message SVID entry');
      certBytes += bytesField(s['x509_svid']).length + bytesField(s['bundle']).length;
    }
    const federated = resp['federated_bundles'];
    if (isRecord(federated)) for (const v of Object.values(federated)) certBytes += bytesField(v).length;
    if (certBytes > MAX_CERT_DATA_BYTES) return fail('svid_malformed', `response carries more than ${MAX_CERT_DATA_BYTES} bytes of certificates`);

    // The first SVID whose spiffe_id is in our trust domain and passes the selector. Federated
    // bundles are never used for trust: only the SVID's own trust domain bundle counts.
    let chosen: Record<string, unknown> | null = null;
    let firstProblem: SvidFailure | null = null;
    for (const s of svids as Record<string, unknown>[]) {
      const field = typeof s['spiffe_id'] === 'string' ? s['spiffe_id'] : '';
      const id = parseSpiffeId(field);
      let problem: SvidFailure | null = null;
      if (typeof id === 'string') problem = fail('svid_spiffe_id_invalid', `spiffe_id field is not a SPIFFE ID: ${id}`);
      else if (id.trustDomain !== this.trustDomain) problem = fail('svid_trust_domain_mismatch', `SPIFFE ID ${id.id} is not in trust domain ${this.trustDomain}`);
      else if (!selectorMatches(this.selector, id.id)) problem = fail('svid_id_not_allowed', `${id.id} is not ${describeSelector(this.selector)}`);
      if (problem === null) {
        chosen = s;
        break;
      }
      firstProblem ??= problem;
    }
    if (chosen === null) {
      const p = firstProblem as SvidFailure;
      return svids.length === 1 ? p : fail(p.code, `none of ${svids.length} SVIDs qualifies; the first: ${p.detail}`);
    }

    let chain: Uint8Array[];
    let bundle: Uint8Array[];
    try {
      chain = splitConcatenatedDer(bytesField(chosen['x509_svid']));
      bundle = splitConcatenatedDer(bytesField(chosen['bundle']));
    } catch (err) {
      if (err instanceof FormatError) return fail('svid_malformed', err.message);
      throw err;
    }
    const r = await validateX509SvidDetailed(this.selector === undefined
      ? { chain, bundle, nowMs: this.now(), trustDomain: this.trustDomain }
      : { chain, bundle, nowMs: this.now(), trustDomain: this.trustDomain, selector: this.selector });
    if (!r.ok) return r;
    if (r.identity.spiffeId !== chosen['spiffe_id']) {
      return fail('svid_spiffe_id_invalid', `spiffe_id field ${String(chosen['spiffe_id'])} differs from the certificate's URI SAN ${r.identity.spiffeId}`);
    }
    return r;
  }
}

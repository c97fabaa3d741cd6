/**
 * `trustplane broker serve` (also `trustplane-broker`): the pod-local broker of SPEC §6 on a Unix
 * socket; `trustplane broker issue`: ask it for the headers of one request (the caller side,
 * holding no key). docs/broker.md.
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { readPrivateKeyFile, isSignerClass, type HeaderEntry, type SignerClass } from '@trustplane/core';
// The broker and adapter libraries (gRPC, undici, …) load only when a command runs.
import type { Broker, BrokerAllowRule, SignerSource } from '@trustplane/broker';
import { collectHeader, parseNonEmpty, parseText, isToken } from '../options.js';
import { failure, usageError, writeJson, type CliIo } from '../output.js';
import { curlCommand } from './sign.js';
import { spiffeSourceFromOptions, addSpiffeOptions, type SpiffeCliOptions } from './broker-spiffe.js';

interface ServeOptions extends SpiffeCliOptions {
  socket: string;
  socketGid?: string;
  issuer: string;
  trustDomain: string;
  signingKey: string;
  kid: string;
  allow: string[];
  ttl: string;
  softwareSubject?: string;
  allowSoftwareFallback?: true;
  contextField?: string[];
  ctx?: string[];
  auditLog?: string;
  readTimeoutMs: string;
  idleTimeoutMs: string;
  maxConnections: string;
}

const collect = (v: string, p: string[] | undefined): string[] => [...(p ?? []), v];

function positiveInt(value: string, flag: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0 || n > max) throw usageError(`${flag} must be an integer 1..${max}, got ${JSON.stringify(value)}`);
  return n;
}

/** `--ctx FIELD=VALUE` (repeatable): the context fields the broker pins itself. */
export function parsePinnedContext(values: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of values) {
    const eq = kv.indexOf('=');
    const field = eq <= 0 ? '' : kv.slice(0, eq);
    const value = kv.slice(eq + 1);
    if (!/^[a-z][a-z0-9_]{0,63}$/.test(field)) throw usageError(`--ctx ${JSON.stringify(kv)}: expected FIELD=VALUE with a snake_case FIELD (a-z, 0-9, _; at most 64 characters)`);
    if (value.length > 1024 || value.includes('\n')) throw usageError(`--ctx ${field}: the value must be at most 1024 characters, without a line feed`);
    if (Object.prototype.hasOwnProperty.call(out, field)) throw usageError(`--ctx ${field} is given twice: give each pinned field once`);
    out[field] = value;
  }
  return out;
}

/** `AUDIENCE` (every route) or `AUDIENCE=ROUTE[,ROUTE…]`. */
export function parseAllowRule(value: string): BrokerAllowRule {
  const eq = value.indexOf('=');
  const audience = (eq === -1 ? value : value.slice(0, eq)).trim();
  const routes = eq === -1 ? ['*'] : value.slice(eq + 1).split(',').map((r) => r.trim()).filter((r) => r !== '');
  if (audience === '' || routes.length === 0) throw usageError(`--allow ${JSON.stringify(value)}: expected AUDIENCE or AUDIENCE=ROUTE[,ROUTE…]`);
  return { audience, routes };
}

function registerServe(broker: Command, io: CliIo): void {
  const env = (o: Option, name: string) => o.env(`TRUSTPLANE_BROKER_${name}`);
  const cmd = broker
    .command('serve')
    .description('Run the broker on a Unix socket: issue request-bound passports (IPC v1) to local callers')
    .addOption(env(new Option('--socket <path>', 'Unix socket path (created 0600; never TCP)').argParser(parseNonEmpty).makeOptionMandatory(), 'SOCKET'))
    .addOption(env(new Option('--socket-gid <gid>', 'numeric group that may also connect (socket mode 0660)'), 'SOCKET_GID'))
    .addOption(env(new Option('--issuer <iss>', 'issuer (passport iss) of the broker key, as listed in the trust material').argParser(parseText).makeOptionMandatory(), 'ISSUER'))
    .addOption(env(new Option('--trust-domain <domain>', 'trust domain of the broker issuer').argParser(parseText).makeOptionMandatory(), 'TRUST_DOMAIN'))
    .addOption(env(new Option('--signing-key <file>', 'the broker issuer private key file').argParser(parseNonEmpty).makeOptionMandatory(), 'SIGNING_KEY'))
    .addOption(env(new Option('--kid <kid>', 'key id of the signing key in the trust material').argParser(parseText).makeOptionMandatory(), 'KID'))
    .addOption(env(new Option('--allow <audience[=routes]>', 'issue for this audience (all routes, or the comma-listed route ids); repeatable').argParser(collect).makeOptionMandatory(), 'ALLOW'))
    .addOption(env(new Option('--ttl <seconds>', 'passport lifetime, at most 900').default('300'), 'TTL'))
    .addOption(env(new Option('--software-subject <sub>', 'enable the software source: issue `software` passports with this subject').argParser(parseText), 'SOFTWARE_SUBJECT'))
    .addOption(env(new Option('--allow-software-fallback', 'grant `software` when a higher class fails and the request allows fallback'), 'ALLOW_SOFTWARE_FALLBACK'))
    .addOption(env(new Option('--context-field <name>', 'a ctx field the broker may copy from the caller into passports (repeatable; default: any)').argParser(collect), 'CONTEXT_FIELD'))
    .addOption(env(new Option('--ctx <field=value>', 'a ctx field the broker sets itself in every passport; a caller asking for another value is refused (broker_context_pinned); repeatable').argParser(collect), 'CTX'))
    .addOption(env(new Option('--audit-log <target>', 'audit events: - (stdout), a file path, or off').default('-'), 'AUDIT_LOG'))
    .addOption(env(new Option('--read-timeout-ms <ms>', 'drop a client that has not sent its line within this time').default('5000'), 'READ_TIMEOUT_MS'))
    .addOption(env(new Option('--idle-timeout-ms <ms>', 'drop a client that has sent nothing within this time (at most the read timeout)').default('1000'), 'IDLE_TIMEOUT_MS'))
    .addOption(env(new Option('--max-connections <n>', 'open connections at most; past it the oldest idle or answered one is evicted, else the new one is refused').default('256'), 'MAX_CONNECTIONS'));
  addSpiffeOptions(cmd);
  cmd.action(async (o: ServeOptions) => {
    const { Broker, softwareSource, startBrokerServer } = await import('@trustplane/broker');
    const { createAuditSink, log } = await import('@trustplane/adapter');
    const ttl = positiveInt(o.ttl, '--ttl', 900);
    const readTimeoutMs = positiveInt(o.readTimeoutMs, '--read-timeout-ms');
    const idleTimeoutMs = positiveInt(o.idleTimeoutMs, '--idle-timeout-ms');
    const maxConnections = positiveInt(o.maxConnections, '--max-connections');
    const socketGid = o.socketGid === undefined ? undefined : positiveInt(o.socketGid, '--socket-gid');
    const allow = o.allow.map(parseAllowRule);
    const pinnedContext = parsePinnedContext(o.ctx ?? []);
    let signingKey;
    try {
      signingKey = readPrivateKeyFile(o.signingKey);
    } catch (err) {
      throw failure(`cannot read --signing-key ${JSON.stringify(o.signingKey)}: ${err instanceof Error ? err.message : String(err)}`, undefined, err);
    }
    // Every usage check before anything starts (the SPIFFE source opens a stream).
    if (o.softwareSubject === undefined && o.spiffeSocket === undefined) throw usageError('no signer source: give --software-subject and/or --spiffe-socket');
    if (o.allowSoftwareFallback === true && o.softwareSubject === undefined) throw usageError('--allow-software-fallback needs --software-subject');
    const sources: SignerSource[] = [];
    if (o.softwareSubject !== undefined) sources.push(softwareSource(o.softwareSubject));
    const spiffe = await spiffeSourceFromOptions(o, o.trustDomain, io);
    if (spiffe !== undefined) sources.push(spiffe.source);

    let b: Broker;
    try {
      b = new Broker({
      policy: {
        issuer: o.issuer,
        trustDomain: o.trustDomain,
        signingKey,
        kid: o.kid,
        allow,
        ttlSeconds: ttl,
        allowSoftwareFallback: o.allowSoftwareFallback === true,
        ...(o.contextField !== undefined ? { allowedContextFields: o.contextField } : {}),
        pinnedContext,
      },
      sources,
    });
    } catch (err) {
      await spiffe?.close();
      throw failure(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
    }
    const audit = createAuditSink(o.auditLog);
    const server = await startBrokerServer({
      socketPath: o.socket,
      broker: b,
      readTimeoutMs,
      idleTimeoutMs,
      maxConnections,
      ...(socketGid !== undefined ? { socketGid } : {}),
      onAudit: (e) => audit.write(e),
      onLog: (level, msg, fields) => log(level, msg, fields),
    }).catch(async (err: unknown) => {
      await spiffe?.close();
      throw failure(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
    });
    // Signal handlers before the line that says we are up: a SIGTERM sent on reading it must find them.
    const stopped = new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log('info', 'shutting down', { signal });
        void server
          .close()
          .then(() => spiffe?.close())
          .then(() => audit.close())
          .then(resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    io.stderr(`trustplane broker: listening on ${o.socket} (classes: ${b.keyBindings.join(', ')}; audiences: ${allow.map((a) => a.audience).join(', ')})\n`);
    await stopped;
  });
}

interface IssueOptions {
  socket: string;
  method: string;
  url: string;
  audience: string;
  routeId: string;
  header?: HeaderEntry[];
  data?: string;
  dataFile?: string;
  keyBinding: string;
  acceptable?: string[];
  allowSoftwareFallback?: true;
  ctx?: string[];
  curl?: true;
  json?: true;
}

function registerIssue(broker: Command, io: CliIo): void {
  broker
    .command('issue')
    .description('Ask a broker for the headers of one request (the caller holds no key)')
    .addOption(new Option('--socket <path>', 'the broker socket').env('TRUSTPLANE_BROKER_SOCKET').argParser(parseNonEmpty).makeOptionMandatory())
    .addOption(new Option('--method <method>', 'HTTP method').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--url <url>', 'absolute URL as it will be sent').argParser(parseNonEmpty).makeOptionMandatory())
    .addOption(new Option('--audience <aud>', 'the API audience').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--route-id <id>', 'the route id the verifier serves this request as').argParser(parseText).makeOptionMandatory())
    .addOption(new Option('--header <header>', "a request header 'Name: value' (repeatable)").argParser(collectHeader))
    .addOption(new Option('--data <string>', 'request body (UTF-8)').conflicts('dataFile'))
    .addOption(new Option('--data-file <file>', 'request body: the bytes of this file').argParser(parseNonEmpty).conflicts('data'))
    .addOption(new Option('--key-binding <class>', "the route's minimum signer class").default('software'))
    .addOption(new Option('--acceptable <class>', 'an acceptable signer class (repeatable; default: any at least --key-binding)').argParser(collect))
    .option('--allow-software-fallback', 'accept `software` if the broker cannot grant the minimum')
    .addOption(new Option('--ctx <field=value>', 'a context value for the passport (repeatable)').argParser(collect))
    .option('--curl', 'print a ready curl command instead of the headers')
    .option('--json', 'print JSON: the headers ({"headers","curl"} with --curl), or the broker response when denied')
    .action(async (o: IssueOptions) => {
      const method = o.method.toUpperCase();
      if (!isToken(method)) throw usageError(`--method ${JSON.stringify(o.method)} is not an HTTP method`);
      let url: URL;
      try {
        url = new URL(o.url);
      } catch {
        throw usageError(`--url ${JSON.stringify(o.url)} is not an absolute URL`);
      }
      const cls = (v: string, flag: string): SignerClass => {
        if (!isSignerClass(v)) throw usageError(`${flag} must be software, remote_kms, hardware_local or attested_workload`);
        return v;
      };
      const ctx: Record<string, string> = {};
      for (const kv of o.ctx ?? []) {
        const eq = kv.indexOf('=');
        if (eq <= 0) throw usageError(`--ctx ${JSON.stringify(kv)}: expected field=value`);
        ctx[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      let body: Buffer | undefined;
      if (o.dataFile !== undefined) {
        try {
          body = readFileSync(o.dataFile);
        } catch (err) {
          throw failure(`cannot read --data-file ${JSON.stringify(o.dataFile)}: ${err instanceof Error ? err.message : String(err)}`);
        }
      } else if (o.data !== undefined) body = Buffer.from(o.data, 'utf8');
      const headers = o.header ?? [];
      const { BrokerClientError, brokerIssue } = await import('@trustplane/broker');
      let result;
      try {
        result = await brokerIssue(o.socket, {
          method,
          url,
          audience: o.audience,
          routeId: o.routeId,
          headers,
          ...(body !== undefined ? { body } : {}),
          requestedKeyBinding: cls(o.keyBinding, '--key-binding'),
          acceptableKeyBindings: (o.acceptable ?? []).map((a) => cls(a, '--acceptable')),
          allowSoftwareFallback: o.allowSoftwareFallback === true,
          ctx,
        });
      } catch (err) {
        if (err instanceof BrokerClientError) throw failure(err.message);
        throw err;
      }
      if (!result.accepted) {
        if (o.json === true) writeJson(io, result.response);
        // `trustplane: <reason_code>: the broker refused (<its message>)`
        throw failure(`the broker refused (${result.response.error?.message ?? 'no message'})`, result.response.reason_code);
      }
      const all: Record<string, string> = Object.fromEntries([...headers.map((h) => [h.name, h.value] as const), ...Object.entries(result.headers)]);
      if (o.curl !== true) {
        writeJson(io, all);
        return;
      }
      const curl = curlCommand({
        method,
        url,
        headers: all,
        callerHasContentType: headers.some((h) => h.name.toLowerCase() === 'content-type'),
        ...(o.data !== undefined ? { data: o.data } : {}),
        ...(o.dataFile !== undefined ? { dataFile: o.dataFile } : {}),
      });
      if (o.json === true) writeJson(io, { headers: all, curl });
      else io.stdout(`${curl}\n`);
    });
}

export function registerBroker(program: Command, io: CliIo): void {
  const broker = program.command('broker').description('The pod-local broker: serve request-bound passports on a Unix socket, or ask one for a request');
  registerServe(broker, io);
  registerIssue(broker, io);
}

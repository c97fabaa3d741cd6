/**
 * The Helm chart (deploy/helm/trustplane-auth), rendered by deploy/helm/render — Go text/template
 * plus sprig, what Helm's engine is made of, with Helm's own functions and values.schema.json
 * validation — and checked as Kubernetes objects: names, selectors against pod labels, ports
 * that probes and Services name, volumes that mounts name, security contexts, digests, and the
 * messages of the renders that must fail. helm itself is not installed (and cannot be) here.
 *
 * Needs Go with Debian's sprig, yaml.v3 and gojsonschema packages: skipped with a loud warning
 * locally when missing, a failure in CI.
 */
import { test, before, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './helpers.js';

const GOPATH = '/usr/share/gocode';
const GO_LIBS = ['github.com/Masterminds/sprig', 'gopkg.in/yaml.v3', 'github.com/xeipuuv/gojsonschema'];
const APT = 'apt-get install -y golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev golang-github-xeipuuv-gojsonschema-dev';

function goAvailable(): boolean {
  const missing = [...(spawnSync('go', ['version']).status === 0 ? [] : ['go']), ...GO_LIBS.filter((l) => !existsSync(join(GOPATH, 'src', l)))];
  if (missing.length > 0 && process.env['CI'] === 'true') throw new Error(`the Helm chart tests need ${missing.join(', ')} in CI (${APT})`);
  if (missing.length > 0) console.warn(`\n*** WARNING: ${missing.join(', ')} missing: the Helm chart tests are SKIPPED locally (they run in CI). ${APT} ***\n`);
  return missing.length === 0;
}

const skip = !goAvailable();
const chartDir = join(repoRoot, 'deploy/helm/trustplane-auth');
const ciValues = (name: string): string => join(chartDir, 'ci', `${name}-values.yaml`);
let workDir = '';
let renderBin = '';

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runRender(args: readonly string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(renderBin, [...args, chartDir], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

// ---- Kubernetes shapes (only what the chart emits) ----

type Labels = Record<string, string>;
interface Meta {
  name: string;
  namespace?: string;
  labels?: Labels;
  annotations?: Record<string, string>;
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  [key: string]: unknown;
}
interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: string };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string } };
}
interface Probe {
  httpGet?: { path: string; port: string | number };
  exec?: { command: string[] };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  securityContext?: SecurityContext;
  resources?: { limits?: Record<string, string>; requests?: Record<string, string> };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface Volume {
  name: string;
  configMap?: { name: string };
  secret?: { secretName: string };
  emptyDir?: Record<string, unknown>;
  csi?: { driver: string; readOnly?: boolean };
  hostPath?: { path: string };
}
interface PodSpec {
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  securityContext?: SecurityContext & { fsGroup?: number };
  containers: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
}
interface Deployment extends K8sObject {
  spec: { replicas: number; strategy?: { type: string }; selector: { matchLabels: Labels }; template: { metadata: { labels: Labels }; spec: PodSpec } };
}
interface Service extends K8sObject {
  spec: { type: string; selector: Labels; ports: { name: string; port: number; targetPort: string | number }[] };
}
interface PolicyPeer {
  podSelector?: { matchLabels?: Labels };
  namespaceSelector?: { matchLabels?: Labels };
}
interface PolicyPort {
  protocol: string;
  port: number;
}
interface NetworkPolicy extends K8sObject {
  spec: {
    podSelector: { matchLabels?: Labels };
    policyTypes: string[];
    ingress?: { from?: PolicyPeer[]; ports?: PolicyPort[] }[];
    egress?: { to?: PolicyPeer[]; ports?: PolicyPort[] }[] | null;
  };
}
interface Pdb extends K8sObject {
  spec: { selector: { matchLabels: Labels }; minAvailable?: number | string; maxUnavailable?: number | string };
}

const API_VERSIONS: Record<string, string> = {
  Deployment: 'apps/v1',
  Service: 'v1',
  ServiceAccount: 'v1',
  NetworkPolicy: 'networking.k8s.io/v1',
  PodDisruptionBudget: 'policy/v1',
};
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const RFC1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const DIGEST_IMAGE = /^[^@\s]+@sha256:[a-f0-9]{64}$/;
const SPIRE_VOLUME = 'spiffe-workload-api';
const BROKER_KEY_VOLUME = 'trustplane-broker-key';

const subset = (sub: Labels, of: Labels | undefined): boolean => Object.keys(sub).length > 0 && Object.entries(sub).every(([k, v]) => of?.[k] === v);
const kinds = (objs: readonly K8sObject[]): string[] => objs.map((o) => `${o.kind}/${o.metadata.name}`).sort();
const byKind = <T extends K8sObject>(objs: readonly K8sObject[], kind: string): T[] => objs.filter((o): o is T => o.kind === kind);
function one<T extends K8sObject>(objs: readonly K8sObject[], kind: string, name?: string): T {
  const found = byKind<T>(objs, kind).filter((o) => name === undefined || o.metadata.name === name);
  assert.equal(found.length, 1, `exactly one ${kind}${name === undefined ? '' : ` ${name}`} in ${kinds(objs).join(', ')}`);
  return found[0]!;
}
const envOf = (c: Container, name: string): EnvVar | undefined => c.env?.find((e) => e.name === name);
const allContainers = (p: PodSpec): Container[] => [...(p.initContainers ?? []), ...p.containers];

function checkSecurityContext(where: string, sc: SecurityContext | undefined, pod: SecurityContext | undefined): void {
  assert.ok(sc !== undefined, `${where}: securityContext`);
  assert.equal(sc.runAsNonRoot ?? pod?.runAsNonRoot, true, `${where}: runAsNonRoot`);
  assert.equal(sc.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
  assert.equal(sc.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation`);
  assert.notEqual(sc.privileged, true, `${where}: privileged`);
  assert.ok(sc.capabilities?.drop?.includes('ALL'), `${where}: capabilities.drop ALL`);
  assert.equal((sc.capabilities?.add ?? []).length, 0, `${where}: no added capabilities`);
  assert.equal((sc.seccompProfile ?? pod?.seccompProfile)?.type, 'RuntimeDefault', `${where}: seccompProfile RuntimeDefault`);
  const uid = sc.runAsUser ?? pod?.runAsUser;
  assert.ok(uid !== undefined && uid > 0, `${where}: a non-zero runAsUser`);
}

function checkProbePort(where: string, c: Container, probe: Probe | undefined): void {
  const port = probe?.httpGet?.port;
  if (port === undefined) return;
  const ok = typeof port === 'string' ? (c.ports ?? []).some((p) => p.name === port) : (c.ports ?? []).some((p) => p.containerPort === port);
  assert.ok(ok, `${where}: probe port ${port} is a container port`);
}

function checkPod(where: string, pod: PodSpec, serviceAccounts: ReadonlySet<string>): void {
  assert.equal(pod.automountServiceAccountToken, false, `${where}: automountServiceAccountToken`);
  assert.ok(pod.serviceAccountName !== undefined && serviceAccounts.has(pod.serviceAccountName), `${where}: serviceAccountName ${pod.serviceAccountName} is rendered`);
  assert.equal(pod.securityContext?.runAsNonRoot, true, `${where}: pod runAsNonRoot`);
  assert.equal(pod.securityContext?.seccompProfile?.type, 'RuntimeDefault', `${where}: pod seccompProfile`);
  const volumes = new Map((pod.volumes ?? []).map((v) => [v.name, v]));
  assert.equal(volumes.size, (pod.volumes ?? []).length, `${where}: volume names are unique`);
  const mounted = new Set<string>();
  const names = new Set<string>();
  for (const c of allContainers(pod)) {
    const at = `${where}/${c.name}`;
    assert.match(c.name, DNS1123_LABEL, `${at}: container name`);
    assert.ok(!names.has(c.name), `${at}: container names are unique`);
    names.add(c.name);
    assert.match(c.image, DIGEST_IMAGE, `${at}: image pinned by digest`);
    checkSecurityContext(at, c.securityContext, pod.securityContext);
    const portNames = (c.ports ?? []).map((p) => p.name).filter((n): n is string => n !== undefined);
    assert.equal(new Set(portNames).size, portNames.length, `${at}: port names are unique`);
    for (const n of portNames) assert.ok(n.length <= 15 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(n) && /[a-z]/.test(n), `${at}: port name ${n} (IANA_SVC_NAME)`);
    checkProbePort(at, c, c.livenessProbe);
    checkProbePort(at, c, c.readinessProbe);
    checkProbePort(at, c, c.startupProbe);
    const paths = new Set<string>();
    for (const m of c.volumeMounts ?? []) {
      assert.ok(volumes.has(m.name), `${at}: volumeMount ${m.name} names a pod volume`);
      assert.ok(m.mountPath.startsWith('/') && !paths.has(m.mountPath), `${at}: mountPath ${m.mountPath}`);
      paths.add(m.mountPath);
      mounted.add(m.name);
    }
    const envNames = (c.env ?? []).map((e) => e.name);
    assert.equal(new Set(envNames).size, envNames.length, `${at}: env names are unique`);
    for (const e of c.env ?? []) {
      assert.ok((e.value === undefined) !== (e.valueFrom === undefined), `${at}: env ${e.name} has exactly one of value/valueFrom`);
      if (e.valueFrom?.secretKeyRef !== undefined) assert.ok(e.valueFrom.secretKeyRef.name !== '' && e.valueFrom.secretKeyRef.key !== '', `${at}: env ${e.name} secretKeyRef`);
    }
    assert.ok(c.resources?.limits?.['memory'] !== undefined, `${at}: a memory limit`);
    // Writable scratch space for a read-only root filesystem.
    if (c.name === 'adapter' || c.name === 'trustplane-broker') assert.ok((c.volumeMounts ?? []).some((m) => m.mountPath === '/tmp' && volumes.get(m.name)?.emptyDir !== undefined), `${at}: /tmp is an emptyDir`);
  }
  for (const v of volumes.keys()) assert.ok(mounted.has(v), `${where}: volume ${v} is mounted somewhere`);
  // The SPIRE agent socket and the broker's private key: the broker container only.
  for (const c of allContainers(pod)) {
    for (const m of c.volumeMounts ?? []) {
      const v = volumes.get(m.name)!;
      if (m.name === SPIRE_VOLUME || v.csi !== undefined || v.hostPath !== undefined) assert.equal(c.name, 'trustplane-broker', `${where}: the SPIRE socket is mounted only into the broker (found in ${c.name})`);
      if (m.name === BROKER_KEY_VOLUME) assert.equal(c.name, 'trustplane-broker', `${where}: the signing key is mounted only into the broker (found in ${c.name})`);
    }
  }
}

/** Everything that must hold for any render. */
function checkObjects(objs: readonly K8sObject[], releaseNamespace = 'default'): void {
  assert.ok(objs.length > 0, 'something rendered');
  const seen = new Set<string>();
  for (const o of objs) {
    const id = `${o.kind}/${o.metadata.namespace ?? releaseNamespace}/${o.metadata.name}`;
    assert.equal(o.apiVersion, API_VERSIONS[o.kind], `${id}: apiVersion (the chart emits only ${Object.keys(API_VERSIONS).join(', ')})`);
    assert.ok(typeof o.metadata.name === 'string' && o.metadata.name.length <= 253 && DNS1123_SUBDOMAIN.test(o.metadata.name), `${id}: metadata.name is a DNS-1123 subdomain`);
    if (o.kind === 'Service') assert.ok(o.metadata.name.length <= 63 && RFC1035_LABEL.test(o.metadata.name), `${id}: Service name is an RFC 1035 label`);
    if (o.kind === 'Deployment') assert.ok(o.metadata.name.length <= 63 && DNS1123_LABEL.test(o.metadata.name), `${id}: Deployment name is a DNS-1123 label`);
    if (o.metadata.namespace !== undefined) assert.match(o.metadata.namespace, DNS1123_LABEL, `${id}: namespace`);
    for (const [k, v] of Object.entries(o.metadata.labels ?? {})) {
      assert.match(k, LABEL_KEY, `${id}: label key ${k}`);
      assert.ok(typeof v === 'string' && v.length <= 63 && LABEL_VALUE.test(v), `${id}: label value ${k}=${String(v)}`);
    }
    assert.ok(!seen.has(id), `${id}: rendered once`);
    seen.add(id);
    // The chart never creates bundle data, keys or any Secret/ConfigMap.
    assert.ok(o.kind !== 'Secret' && o.kind !== 'ConfigMap', `${id}: the chart creates no Secret or ConfigMap`);
  }
  const serviceAccounts = new Set(byKind(objs, 'ServiceAccount').map((s) => s.metadata.name));
  for (const sa of byKind(objs, 'ServiceAccount')) assert.equal(sa['automountServiceAccountToken'], false, `ServiceAccount/${sa.metadata.name}: automountServiceAccountToken`);
  const deployments = byKind<Deployment>(objs, 'Deployment');
  for (const d of deployments) {
    const where = `Deployment/${d.metadata.name}`;
    assert.ok(Number.isInteger(d.spec.replicas) && d.spec.replicas >= 0, `${where}: replicas`);
    assert.ok(subset(d.spec.selector.matchLabels, d.spec.template.metadata.labels), `${where}: selector matches the pod template labels`);
    checkPod(where, d.spec.template.spec, serviceAccounts);
  }
  const podsOf = (sel: Labels): Deployment[] => deployments.filter((d) => subset(sel, d.spec.template.metadata.labels));
  for (const s of byKind<Service>(objs, 'Service')) {
    const where = `Service/${s.metadata.name}`;
    const targets = podsOf(s.spec.selector);
    assert.equal(targets.length, 1, `${where}: selects the pods of one Deployment`);
    const containers = targets[0]!.spec.template.spec.containers;
    for (const p of s.spec.ports) {
      assert.ok(Number.isInteger(p.port) && p.port > 0 && p.port < 65536, `${where}: port ${p.port}`);
      const ok = containers.some((c) => (c.ports ?? []).some((cp) => (typeof p.targetPort === 'string' ? cp.name === p.targetPort : cp.containerPort === p.targetPort)));
      assert.ok(ok, `${where}: targetPort ${p.targetPort} is a container port of the selected pods`);
    }
  }
  for (const p of byKind<Pdb>(objs, 'PodDisruptionBudget')) {
    assert.equal(podsOf(p.spec.selector.matchLabels).length, 1, `PodDisruptionBudget/${p.metadata.name}: selects the pods of one Deployment`);
    assert.ok((p.spec.minAvailable === undefined) !== (p.spec.maxUnavailable === undefined), 'PodDisruptionBudget: exactly one of minAvailable/maxUnavailable');
  }
  for (const np of byKind<NetworkPolicy>(objs, 'NetworkPolicy')) {
    const where = `NetworkPolicy/${np.metadata.name}`;
    assert.ok(typeof np.spec.podSelector === 'object', `${where}: podSelector`);
    assert.ok(np.spec.policyTypes.length > 0 && np.spec.policyTypes.every((t) => t === 'Ingress' || t === 'Egress'), `${where}: policyTypes`);
    for (const rule of [...(np.spec.ingress ?? []), ...(np.spec.egress ?? [])]) {
      for (const p of rule.ports ?? []) assert.ok(['TCP', 'UDP'].includes(p.protocol) && Number.isInteger(p.port) && p.port > 0 && p.port < 65536, `${where}: port ${JSON.stringify(p)}`);
    }
  }
}

async function renderObjects(args: readonly string[]): Promise<K8sObject[]> {
  const r = await runRender(['--json', ...args]);
  assert.equal(r.code, 0, `render ${args.join(' ')} failed: ${r.stderr}`);
  const objs = JSON.parse(r.stdout) as K8sObject[];
  checkObjects(objs);
  return objs;
}

async function renderFails(args: readonly string[], message: RegExp): Promise<void> {
  const r = await runRender(args);
  assert.equal(r.code, 1, `render ${args.join(' ')} should fail: ${r.stdout.slice(0, 200)}`);
  assert.equal(r.stdout, '', 'a failed render prints no manifests');
  assert.match(r.stderr, /^Error: /);
  assert.match(r.stderr, message);
}

before(() => {
  if (skip) return;
  workDir = mkdtempSync(join(tmpdir(), 'tp-helm-'));
  renderBin = join(workDir, 'render');
  const r = spawnSync('go', ['build', '-o', renderBin, './deploy/helm/render'], {
    cwd: repoRoot,
    encoding: 'utf8',
    env: { ...process.env, GOPATH, GO111MODULE: 'off', GOFLAGS: '', GOCACHE: process.env['GOCACHE'] ?? join(tmpdir(), 'trustplane-go-build-cache') },
  });
  assert.equal(r.status, 0, `go build ./deploy/helm/render: ${r.stderr}`);
});

after(() => {
  if (workDir !== '') rmSync(workDir, { recursive: true, force: true });
});

const adapterName = 'release-name-trustplane-auth';
const adapterSelector: Labels = { 'app.kubernetes.io/name': 'trustplane-auth', 'app.kubernetes.io/instance': 'release-name', 'app.kubernetes.io/component': 'adapter' };

test('helm: the minimal values render a hardened single-replica adapter with the memory store', { skip }, async () => {
  const objs = await renderObjects(['-f', ciValues('minimal')]);
  assert.deepEqual(kinds(objs), [`Deployment/${adapterName}`, `NetworkPolicy/${adapterName}`, `NetworkPolicy/${adapterName}-upstream`, `Service/${adapterName}`, `ServiceAccount/${adapterName}`]);
  const d = one<Deployment>(objs, 'Deployment');
  assert.equal(d.spec.replicas, 1);
  assert.equal(d.spec.strategy?.type, 'Recreate', 'two pods with separate memory stores must never serve at once');
  assert.deepEqual(d.spec.selector.matchLabels, adapterSelector);
  const pod = d.spec.template.spec;
  const [c] = pod.containers;
  assert.ok(c !== undefined && pod.containers.length === 1);
  assert.equal(c.image, 'registry.example.com/trustplane/adapter@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef');
  assert.equal(c.livenessProbe?.httpGet?.path, '/healthz');
  assert.equal(c.readinessProbe?.httpGet?.path, '/readyz');
  assert.equal(c.livenessProbe.httpGet.port, 'admin');
  assert.equal(c.readinessProbe.httpGet.port, 'admin');
  assert.deepEqual(c.ports?.map((p) => [p.name, p.containerPort]), [['http', 8080], ['admin', 9090]]);
  const env = (n: string) => envOf(c, n)?.value;
  assert.equal(env('TRUSTPLANE_LISTEN'), '0.0.0.0:8080');
  assert.equal(env('TRUSTPLANE_ADMIN_LISTEN'), '0.0.0.0:9090');
  assert.equal(env('TRUSTPLANE_UPSTREAM'), 'http://orders.orders.svc.cluster.local:3000');
  assert.equal(env('TRUSTPLANE_REPLAY'), 'memory');
  assert.equal(env('TRUSTPLANE_REPLAY_MAX_ENTRIES'), '1000000', 'the memory store bound, printed as an integer');
  assert.equal(env('TRUSTPLANE_REPLICAS'), '1');
  assert.equal(env('TRUSTPLANE_BUNDLE_SIGNATURE_PUBLIC_KEY'), 'bundle-signer-1=Bvr4xDhMIMa7FYK69yRhvD1s9vjtrK7pAqd0NeNKIqw');
  assert.equal(env('TRUSTPLANE_MAX_BODY_BYTES'), '1048576', 'numbers print as integers (Helm values are float64)');
  // The bundle files come from the named ConfigMap, mounted read-only where the env points.
  const bundles = pod.volumes?.find((v) => v.name === 'bundles');
  assert.deepEqual(bundles?.configMap, { name: 'orders-trustplane-bundles' });
  const mount = c.volumeMounts?.find((m) => m.name === 'bundles');
  assert.equal(mount?.readOnly, true);
  assert.equal(env('TRUSTPLANE_BUNDLE'), `${mount.mountPath}/trust-material.json`);
  assert.equal(env('TRUSTPLANE_POLICY_BUNDLE'), `${mount.mountPath}/policy-bundle.json`);
  // No private key of any kind reaches the adapter.
  assert.ok(!(pod.volumes ?? []).some((v) => v.secret !== undefined), 'no Secret volume in the adapter');
  assert.ok(!(c.env ?? []).some((e) => /PRIVATE|SIGNING_KEY$/.test(e.name)), 'no private key setting in the adapter');

  const svc = one<Service>(objs, 'Service');
  assert.deepEqual(svc.spec.selector, adapterSelector);
  assert.deepEqual(svc.spec.ports.map((p) => [p.name, p.port, p.targetPort]), [['http', 80, 'http']], 'the admin port is not exposed by default');

  // Only the adapter pods may reach the upstream pods, on the upstream port.
  const up = one<NetworkPolicy>(objs, 'NetworkPolicy', `${adapterName}-upstream`);
  assert.equal(up.metadata.namespace, 'orders');
  assert.deepEqual(up.spec.podSelector, { matchLabels: { 'app.kubernetes.io/name': 'orders-api' } });
  assert.deepEqual(up.spec.policyTypes, ['Ingress']);
  assert.equal(up.spec.ingress?.length, 1);
  const [rule] = up.spec.ingress;
  assert.deepEqual(rule?.ports, [{ protocol: 'TCP', port: 3000 }]);
  assert.equal(rule.from?.length, 1);
  const [peer] = rule.from;
  assert.ok(peer?.podSelector?.matchLabels !== undefined && subset(peer.podSelector.matchLabels, d.spec.template.metadata.labels), 'the allowed peer is the adapter pods');
  assert.deepEqual(peer.namespaceSelector, { matchLabels: { 'kubernetes.io/metadata.name': 'default' } }, 'from the release namespace');

  const own = one<NetworkPolicy>(objs, 'NetworkPolicy', adapterName);
  assert.deepEqual(own.spec.podSelector.matchLabels, adapterSelector);
  assert.deepEqual(own.spec.policyTypes, ['Ingress', 'Egress']);
  assert.deepEqual(own.spec.ingress, [{ ports: [{ protocol: 'TCP', port: 8080 }] }], 'the admin port admits no pod traffic by default');
  const egress = own.spec.egress ?? [];
  assert.equal(egress.length, 2, 'upstream and DNS only');
  assert.deepEqual(egress[0], { to: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'orders-api' } }, namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'orders' } } }], ports: [{ protocol: 'TCP', port: 3000 }] });
  assert.deepEqual(egress[1]?.ports, [{ protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 53 }]);
});

test('helm: three replicas with Redis from a Secret, a PDB, rolling updates, admin port for monitoring', { skip }, async () => {
  const objs = await renderObjects(['-f', ciValues('redis')]);
  assert.deepEqual(kinds(objs), [`Deployment/${adapterName}`, `NetworkPolicy/${adapterName}`, `NetworkPolicy/${adapterName}-upstream`, `PodDisruptionBudget/${adapterName}`, `Service/${adapterName}`, `ServiceAccount/${adapterName}`]);
  const d = one<Deployment>(objs, 'Deployment');
  assert.equal(d.spec.replicas, 3);
  assert.equal(d.spec.strategy?.type, 'RollingUpdate');
  const c = d.spec.template.spec.containers[0]!;
  assert.deepEqual(envOf(c, 'TRUSTPLANE_REPLAY'), { name: 'TRUSTPLANE_REPLAY', valueFrom: { secretKeyRef: { name: 'trustplane-redis', key: 'url' } } });
  assert.equal(envOf(c, 'TRUSTPLANE_REPLICAS')?.value, '3');
  assert.equal(envOf(c, 'TRUSTPLANE_REPLAY_MAX_ENTRIES'), undefined, 'the memory store bound is not passed with Redis (the adapter would refuse it)');
  assert.deepEqual(envOf(c, 'TRUSTPLANE_BUNDLE_SIGNATURE_PUBLIC_KEY')?.valueFrom, { secretKeyRef: { name: 'trustplane-bundle-signing-keys', key: 'bundle-signature-public-keys' } });
  assert.deepEqual(d.spec.template.spec.volumes?.find((v) => v.name === 'bundles')?.secret, { secretName: 'orders-trustplane-bundles' });
  assert.equal(one<Pdb>(objs, 'PodDisruptionBudget').spec.maxUnavailable, 1);
  assert.deepEqual(one<Service>(objs, 'Service').spec.ports.map((p) => p.name), ['http', 'admin']);
  const own = one<NetworkPolicy>(objs, 'NetworkPolicy', adapterName);
  assert.deepEqual(own.spec.ingress?.[1], { ports: [{ protocol: 'TCP', port: 9090 }], from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }] });
  assert.deepEqual(own.spec.egress?.[2], { ports: [{ protocol: 'TCP', port: 6379 }], to: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'redis' } } }] });
  // Upstream in the release namespace: no namespace selectors needed.
  const up = one<NetworkPolicy>(objs, 'NetworkPolicy', `${adapterName}-upstream`);
  assert.equal(up.metadata.namespace, undefined);
  assert.deepEqual(up.spec.ingress?.[0]?.from, [{ podSelector: { matchLabels: adapterSelector } }]);
});

test('helm: replicas > 1 with the memory replay store fails the render; with Redis it renders', { skip }, async () => {
  await renderFails(['-f', ciValues('minimal'), '--set', 'adapter.replicas=2'], /execution error at .*: adapter\.replicas=2 needs a shared replay store: with adapter\.replay\.store=memory each replica keeps its own replay state/);
  await renderFails(['-f', ciValues('minimal'), '--set', 'adapter.replicas=2,adapter.replay.store=redis'], /adapter\.replay\.store=redis needs adapter\.replay\.redis\.url or adapter\.replay\.redis\.existingSecret\.name/);
  const objs = await renderObjects(['-f', ciValues('minimal'), '--set', 'adapter.replicas=2,adapter.replay.store=redis', '--set-string', 'adapter.replay.redis.url=redis://redis.orders.svc:6379']);
  const d = one<Deployment>(objs, 'Deployment');
  assert.equal(d.spec.replicas, 2);
  const c = d.spec.template.spec.containers[0]!;
  assert.equal(envOf(c, 'TRUSTPLANE_REPLAY')?.value, 'redis://redis.orders.svc:6379');
  assert.equal(envOf(c, 'TRUSTPLANE_REPLICAS')?.value, '2');
  // The Redis egress rule appears, open to any destination on 6379 when no peers are named.
  assert.deepEqual(one<NetworkPolicy>(objs, 'NetworkPolicy', adapterName).spec.egress?.[2], { ports: [{ protocol: 'TCP', port: 6379 }] });
});

test('helm: images are pinned by digest; a tag only when there is no digest; neither fails', { skip }, async () => {
  await renderFails(['-f', ciValues('minimal'), '--set', 'adapter.image.digest='], /adapter\.image\.digest is required \(or, less safely, adapter\.image\.tag\)/);
  const tagged = await runRender(['--json', '-f', ciValues('minimal'), '--set', 'adapter.image.digest=', '--set', 'adapter.image.tag=0.1.0']);
  assert.equal(tagged.code, 0, tagged.stderr);
  const d = one<Deployment>(JSON.parse(tagged.stdout) as K8sObject[], 'Deployment');
  assert.equal(d.spec.template.spec.containers[0]?.image, 'registry.example.com/trustplane/adapter:0.1.0');
  const both = await renderObjects(['-f', ciValues('minimal'), '--set', 'adapter.image.tag=0.1.0']);
  assert.match(one<Deployment>(both, 'Deployment').spec.template.spec.containers[0]!.image, /@sha256:/, 'the digest wins over the tag');
  await renderFails(['-f', ciValues('minimal'), '--set', 'adapter.image.digest=latest'], /adapter\.image\.digest: Does not match pattern/);
});

test('helm: the broker sidecar joins the caller pod; the SPIRE socket and the signing key reach only the broker', { skip }, async () => {
  const objs = await renderObjects(['-f', ciValues('broker')]);
  assert.deepEqual(kinds(objs), ['Deployment/orders-worker', 'ServiceAccount/orders-worker'], 'adapter.enabled=false renders no adapter objects');
  const d = one<Deployment>(objs, 'Deployment');
  const pod = d.spec.template.spec;
  assert.deepEqual(pod.containers.map((c) => c.name), ['worker', 'trustplane-broker']);
  const [worker, broker] = pod.containers;
  assert.ok(worker !== undefined && broker !== undefined);
  assert.equal(pod.serviceAccountName, 'orders-worker', 'SPIRE selects on this ServiceAccount');
  assert.equal(broker.image, 'registry.example.com/trustplane/broker@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210');
  const spire = pod.volumes?.find((v) => v.name === SPIRE_VOLUME);
  assert.deepEqual(spire?.csi, { driver: 'csi.spiffe.io', readOnly: true });
  assert.deepEqual(broker.volumeMounts?.find((m) => m.name === SPIRE_VOLUME), { name: SPIRE_VOLUME, mountPath: '/spiffe-workload-api', readOnly: true });
  assert.ok(!(worker.volumeMounts ?? []).some((m) => m.name === SPIRE_VOLUME || m.name === BROKER_KEY_VOLUME));
  assert.equal(pod.volumes?.find((v) => v.name === BROKER_KEY_VOLUME)?.secret?.secretName, 'orders-worker-broker-key');
  // One socket directory, shared: writable for the broker, read-only for the caller.
  const socketVolume = pod.volumes?.find((v) => v.name === 'trustplane-broker-socket');
  assert.ok(socketVolume?.emptyDir !== undefined);
  assert.deepEqual(broker.volumeMounts?.find((m) => m.name === 'trustplane-broker-socket'), { name: 'trustplane-broker-socket', mountPath: '/run/trustplane' });
  assert.deepEqual(worker.volumeMounts?.find((m) => m.name === 'trustplane-broker-socket'), { name: 'trustplane-broker-socket', mountPath: '/run/trustplane', readOnly: true });
  assert.equal(envOf(worker, 'TRUSTPLANE_BROKER_SOCKET')?.value, '/run/trustplane/broker.sock');
  assert.equal(envOf(broker, 'TRUSTPLANE_BROKER_SOCKET')?.value, '/run/trustplane/broker.sock');
  assert.equal(envOf(broker, 'TRUSTPLANE_BROKER_SOCKET_GID')?.value, String(pod.securityContext?.fsGroup), 'the socket group is the pod fsGroup');
  assert.equal(envOf(broker, 'TRUSTPLANE_BROKER_SIGNING_KEY')?.value, '/etc/trustplane/broker-key/broker.key');
  assert.equal(envOf(broker, 'TRUSTPLANE_BROKER_SPIFFE_SOCKET')?.value, '/spiffe-workload-api/spire-agent.sock');
  assert.equal(envOf(broker, 'TRUSTPLANE_BROKER_SPIFFE_TRUST_DOMAIN')?.value, 'acme.example');
  assert.equal(envOf(broker, 'TRUSTPLANE_BROKER_SPIFFE_ID_PREFIX')?.value, 'spiffe://acme.example/ns/orders/sa/');
  assert.deepEqual(broker.args, ['--allow', 'orders-api=orders.create,orders.list']);
  assert.ok(broker.readinessProbe?.exec !== undefined, 'ready once the socket exists');

  // hostPath instead of the CSI driver; the caller's own securityContext keeps the hardening.
  const host = await renderObjects(['-f', ciValues('broker'), '--set', 'broker.spiffe.socketVolume.type=hostPath', '--set', 'broker.workload.containers[0].securityContext.runAsUser=20000']);
  const hostPod = one<Deployment>(host, 'Deployment').spec.template.spec;
  assert.deepEqual(hostPod.volumes?.find((v) => v.name === SPIRE_VOLUME)?.hostPath, { path: '/run/spire/agent-sockets', type: 'Directory' });
  assert.equal(hostPod.containers[0]?.securityContext?.runAsUser, 20000);
  assert.equal(hostPod.containers[0]?.securityContext?.readOnlyRootFilesystem, true);

  // Software source only: no SPIRE volume at all.
  const soft = await renderObjects(['-f', ciValues('broker'), '--set', 'broker.spiffe.enabled=false']);
  assert.ok(!(one<Deployment>(soft, 'Deployment').spec.template.spec.volumes ?? []).some((v) => v.name === SPIRE_VOLUME));

  // Both releases' objects together (adapter + caller) still check out.
  const both = await renderObjects(['-f', ciValues('minimal'), '-f', ciValues('broker'), '--set', 'adapter.enabled=true']);
  assert.equal(byKind(both, 'Deployment').length, 2);
});

test('helm: missing required values fail with a message naming the value', { skip }, async () => {
  await renderFails([], /adapter\.upstream is required/);
  const base = ['-f', ciValues('minimal')];
  await renderFails([...base, '--set', 'adapter.bundles.name='], /adapter\.bundles\.name is required: the existing configMap holding the signed trust-material\.json and policy-bundle\.json \(the chart never creates bundle data\)/);
  await renderFails([...base, '--set', 'adapter.bundleSigningKeys.publicKeys=null'], /adapter\.bundleSigningKeys\.publicKeys .* is required/);
  await renderFails([...base, '--set', 'networkPolicy.upstream.podLabels=null'], /networkPolicy\.upstream\.podLabels is required/);
  await renderFails([...base, '--set', 'adapter.routePolicyMode=route-id'], /adapter\.routePolicyMode=route-id needs adapter\.routeId/);
  const broker = ['-f', ciValues('broker')];
  await renderFails([...broker, '--set', 'broker.workload.containers=null'], /broker\.workload\.containers needs the caller container/);
  await renderFails([...broker, '--set', 'broker.softwareSubject=,broker.spiffe.enabled=false'], /the broker needs a signer source/);
  await renderFails([...broker, '--set', 'broker.signingKey.secretName='], /broker\.signingKey\.secretName is required/);
  await renderFails([...broker, '--set', 'broker.image.digest='], /broker\.image\.digest is required/);
});

test('helm: values.schema.json refuses unknown keys, wrong types and weakened hardening', { skip }, async () => {
  const base = ['-f', ciValues('minimal')];
  const cases: [string[], RegExp][] = [
    [['--set', 'adapter.replcas=2'], /adapter: Additional property replcas is not allowed/],
    [['--set', 'adapter.replay.store=memcached'], /adapter\.replay\.store must be one of the following: "memory", "redis"/],
    [['--set', 'adapter.replicas=two'], /adapter\.replicas: Invalid type\. Expected: integer, given: string/],
    [['--set', 'adapter.replay.memory.maxEntries=0'], /adapter\.replay\.memory\.maxEntries: Must be greater than or equal to 1/],
    [['--set', 'containerSecurityContext.readOnlyRootFilesystem=false'], /containerSecurityContext\.readOnlyRootFilesystem does not match: true/],
    [['--set', 'containerSecurityContext.allowPrivilegeEscalation=true'], /containerSecurityContext\.allowPrivilegeEscalation does not match: false/],
    [['--set', 'podSecurityContext.runAsNonRoot=false'], /podSecurityContext\.runAsNonRoot does not match: true/],
    [['--set', 'containerSecurityContext.capabilities.drop={NET_RAW}'], /containerSecurityContext\.capabilities\.drop/],
    [['--set', 'adapter.replay.redis.url=http://redis:6379'], /adapter\.replay\.redis\.url: Does not match pattern/],
    [['--set', 'adapter.bundleSigningKeys.publicKeys={not-a-key}'], /adapter\.bundleSigningKeys\.publicKeys\.0: Does not match pattern/],
    [['--set', 'broker.workload.containers[0].name=trustplane-broker,broker.workload.containers[0].image=x'], /broker\.workload\.containers\.0\.name/],
    // A caller container may not mount the broker's volumes (the SPIRE socket, the key).
    [['--set', 'broker.workload.containers[0].name=w,broker.workload.containers[0].image=x,broker.workload.containers[0].volumeMounts[0].name=spiffe-workload-api,broker.workload.containers[0].volumeMounts[0].mountPath=/s'], /broker\.workload\.containers\.0\.volumeMounts\.0\.name: Must not validate the schema/],
  ];
  const results = await Promise.all(cases.map(([args]) => runRender([...base, ...args])));
  results.forEach((r, i) => {
    const [args, want] = cases[i]!;
    assert.equal(r.code, 1, `${args.join(' ')} should be refused`);
    assert.match(r.stderr, /^Error: values don't meet the specifications of the schema\(s\) in the following chart\(s\):\ntrustplane-auth:\n- /);
    assert.match(r.stderr, want, `${args.join(' ')}: ${r.stderr}`);
  });
});

test('helm: switches and overrides (NetworkPolicy off, several upstream ports, route-id, PDB minAvailable, names)', { skip }, async () => {
  const base = ['-f', ciValues('minimal')];
  const noNp = await renderObjects([...base, '--set', 'networkPolicy.enabled=false']);
  assert.equal(byKind(noNp, 'NetworkPolicy').length, 0);
  const ports = await renderObjects([...base, '--set', 'networkPolicy.upstream.ports={3000,3001}', '--set', 'networkPolicy.adapter.egress.enabled=false']);
  assert.deepEqual(one<NetworkPolicy>(ports, 'NetworkPolicy', `${adapterName}-upstream`).spec.ingress?.[0]?.ports?.map((p) => p.port), [3000, 3001]);
  const own = one<NetworkPolicy>(ports, 'NetworkPolicy', adapterName);
  assert.deepEqual(own.spec.policyTypes, ['Ingress']);
  assert.equal(own.spec.egress, undefined);
  const routeId = await renderObjects([...base, '--set', 'adapter.routePolicyMode=route-id,adapter.routeId=orders.create']);
  assert.equal(envOf(one<Deployment>(routeId, 'Deployment').spec.template.spec.containers[0]!, 'TRUSTPLANE_ROUTE_ID')?.value, 'orders.create');
  const pdb = await renderObjects([...base, '--set', 'adapter.replicas=3,adapter.replay.store=redis,adapter.replay.redis.url=redis://r:6379,adapter.podDisruptionBudget.enabled=true', '--set-string', 'adapter.podDisruptionBudget.minAvailable=50%']);
  const spec = one<Pdb>(pdb, 'PodDisruptionBudget').spec;
  assert.equal(spec.minAvailable, '50%');
  assert.equal(spec.maxUnavailable, undefined);
  const named = await renderObjects([...base, '--release-name', 'orders-auth', '--namespace', 'orders', '--set', 'networkPolicy.upstream.namespace=', '--set', 'commonLabels.team=payments']);
  assert.deepEqual(kinds(named), ['Deployment/orders-auth-trustplane-auth', 'NetworkPolicy/orders-auth-trustplane-auth', 'NetworkPolicy/orders-auth-trustplane-auth-upstream', 'Service/orders-auth-trustplane-auth', 'ServiceAccount/orders-auth-trustplane-auth']);
  assert.ok(named.every((o) => o.metadata.labels?.['team'] === 'payments'));
  const long = await renderObjects([...base, '--release-name', 'a-very-long-release-name-that-goes-on-and-on-and-on-forever']);
  assert.ok(long.every((o) => o.metadata.name.length <= 63));
});

/** Leaf paths of the values: objects are walked, anything else (lists, scalars, {}) is a leaf. */
function leafPaths(v: unknown, prefix = ''): string[] {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.keys(v).length === 0) return [prefix];
  return Object.entries(v as Record<string, unknown>).flatMap(([k, x]) => leafPaths(x, prefix === '' ? k : `${prefix}.${k}`));
}

test('helm: the chart README documents every value, and names no value that does not exist', { skip }, async () => {
  const r = await runRender(['--values-json']);
  assert.equal(r.code, 0, r.stderr);
  const leaves = leafPaths(JSON.parse(r.stdout));
  const readme = readFileSync(join(chartDir, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('## Values'), readme.indexOf('## Rendering without helm'));
  const documented = new Set([...table.matchAll(/^\| `([A-Za-z0-9.]+)` \|/gm)].map((m) => m[1]!));
  const sections = new Set(['adapter', 'networkPolicy', 'broker', 'networkPolicy.adapter', 'networkPolicy.adapter.egress', 'broker.spiffe', 'broker.workload']);
  const covered = (p: string): boolean => {
    const parts = p.split('.');
    for (let i = parts.length; i >= 1; i--) {
      const prefix = parts.slice(0, i).join('.');
      if (documented.has(prefix)) return true;
      if (sections.has(prefix)) return false;
    }
    return false;
  };
  assert.deepEqual(leaves.filter((p) => !covered(p)), [], 'values without a row in the README');
  const known = (p: string): boolean => leaves.some((l) => l === p || l.startsWith(`${p}.`));
  assert.deepEqual([...documented].filter((p) => !known(p)), [], 'README rows for values that do not exist');
});

test('helm: graceful rollouts — a shutdown delay before the drain, and a grace period that covers both', { skip }, async () => {
  const base = ['-f', ciValues('minimal')];
  const d = one<Deployment>(await renderObjects(base), 'Deployment');
  assert.equal(envOf(d.spec.template.spec.containers[0]!, 'TRUSTPLANE_SHUTDOWN_DELAY')?.value, '5');
  await renderFails([...base, '--set', 'adapter.terminationGracePeriodSeconds=15'], /adapter\.terminationGracePeriodSeconds=15 must exceed adapter\.shutdownDelaySeconds \(5\) plus the adapter's 10 s drain/);
  const noDelay = one<Deployment>(await renderObjects([...base, '--set', 'adapter.shutdownDelaySeconds=0,adapter.terminationGracePeriodSeconds=15']), 'Deployment');
  assert.equal(envOf(noDelay.spec.template.spec.containers[0]!, 'TRUSTPLANE_SHUTDOWN_DELAY')?.value, '0');
});

test('helm: renders that could never work fail — same two ports, a PDB that blocks every drain, egress with no way to the upstream', { skip }, async () => {
  const base = ['-f', ciValues('minimal')];
  await renderFails([...base, '--set', 'adapter.adminPort=8080'], /adapter\.port and adapter\.adminPort are both 8080/);
  await renderFails([...base, '--set', 'adapter.podDisruptionBudget.enabled=true,adapter.podDisruptionBudget.minAvailable=1'], /adapter\.podDisruptionBudget would never allow an eviction with adapter\.replicas=1/);
  await renderFails([...base, '--set', 'adapter.podDisruptionBudget.enabled=true,adapter.podDisruptionBudget.maxUnavailable=0'], /would never allow an eviction/);
  await renderFails([...base, '--set', 'adapter.podDisruptionBudget.enabled=true', '--set-string', 'adapter.podDisruptionBudget.minAvailable=100%'], /would never allow an eviction/);
  await renderFails([...base, '--set', 'networkPolicy.upstream.enabled=false,networkPolicy.upstream.podLabels=null,networkPolicy.upstream.ports=null'], /nothing would let it reach the upstream/);
  // The upstream's own policy off, its labels and ports given: the adapter keeps its egress rule.
  const objs = await renderObjects([...base, '--set', 'networkPolicy.upstream.enabled=false']);
  assert.equal(byKind(objs, 'NetworkPolicy').length, 1);
  const egress = one<NetworkPolicy>(objs, 'NetworkPolicy', adapterName).spec.egress ?? [];
  assert.ok(egress.some((rule) => (rule.to ?? []).some((peer) => peer.podSelector !== undefined) && (rule.ports ?? []).length > 0), JSON.stringify(egress));
  // A PDB that allows one eviction of three renders.
  const pdb = await renderObjects([...base, '--set', 'adapter.replicas=3,adapter.replay.store=redis,adapter.replay.redis.url=redis://r:6379,adapter.podDisruptionBudget.enabled=true,adapter.podDisruptionBudget.minAvailable=2']);
  assert.equal(one<Pdb>(pdb, 'PodDisruptionBudget').spec.minAvailable, 2);
});

test('helm: the security contexts accept no other keys (typos, seLinuxOptions, procMount Unmasked, Unconfined AppArmor)', { skip }, async () => {
  const base = ['-f', ciValues('minimal')];
  const cases: [string, RegExp][] = [
    ['containerSecurityContext.readOnlyRootFileSystem=false', /containerSecurityContext: Additional property readOnlyRootFileSystem is not allowed/],
    ['podSecurityContext.runAsUsr=0', /podSecurityContext: Additional property runAsUsr is not allowed/],
    ['podSecurityContext.seLinuxOptions.type=spc_t', /podSecurityContext: Additional property seLinuxOptions is not allowed/],
    ['containerSecurityContext.procMount=Unmasked', /containerSecurityContext\.procMount does not match: "Default"/],
    ['containerSecurityContext.appArmorProfile.type=Unconfined', /containerSecurityContext\.appArmorProfile\.type must be one of the following/],
  ];
  const results = await Promise.all(cases.map(([set]) => runRender([...base, '--set', set])));
  results.forEach((r, i) => {
    assert.equal(r.code, 1, `${cases[i]![0]} should be refused`);
    assert.match(r.stderr, cases[i]![1], r.stderr);
  });
  // Strengthening ones pass.
  await renderObjects([...base, '--set', 'containerSecurityContext.appArmorProfile.type=RuntimeDefault,podSecurityContext.fsGroupChangePolicy=OnRootMismatch']);
});

test('helm: a caller container\'s own securityContext keys win one by one, false included; the rest come from the hardened default', { skip }, async () => {
  const r = await runRender(['--json', '-f', ciValues('broker'), '--set', 'broker.workload.containers[0].securityContext.readOnlyRootFilesystem=false']);
  assert.equal(r.code, 0, r.stderr);
  const d = (JSON.parse(r.stdout) as K8sObject[]).find((o) => o.kind === 'Deployment') as Deployment;
  const worker = d.spec.template.spec.containers.find((c) => c.name === 'worker')!;
  assert.equal(worker.securityContext?.readOnlyRootFilesystem, false, 'sprig merge used to turn this back into true');
  assert.equal(worker.securityContext?.allowPrivilegeEscalation, false);
  assert.deepEqual(worker.securityContext?.capabilities?.drop, ['ALL']);
  assert.equal(worker.securityContext?.runAsUser, 10001);
});

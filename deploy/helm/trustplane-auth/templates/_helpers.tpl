{{/*
Names, labels, images and the checks every render runs. Numbers from values files are float64
in Helm (YAML → JSON), so every number printed or compared goes through `int`.
*/}}

{{- define "trustplane-auth.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, or <release> when it already contains the chart name; 54 characters
leave room for the "-upstream" suffix. */}}
{{- define "trustplane-auth.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "trustplane-auth.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of the chart's own objects (not the caller workload's: see broker.labels). */}}
{{- define "trustplane-auth.labels" -}}
app.kubernetes.io/name: {{ include "trustplane-auth.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{ include "trustplane-auth.commonLabels" . }}
{{- end -}}

{{- define "trustplane-auth.commonLabels" -}}
helm.sh/chart: {{ include "trustplane-auth.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trustplane-auth
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The caller workload is named after itself, not after this chart. */}}
{{- define "trustplane-auth.broker.labels" -}}
app.kubernetes.io/name: {{ .Values.broker.workload.name }}
app.kubernetes.io/component: broker-workload
{{ include "trustplane-auth.commonLabels" . }}
{{- end -}}

{{- define "trustplane-auth.adapter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trustplane-auth.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: adapter
{{- end -}}

{{- define "trustplane-auth.broker.selectorLabels" -}}
app.kubernetes.io/name: {{ .Values.broker.workload.name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker-workload
{{- end -}}

{{- define "trustplane-auth.adapter.serviceAccountName" -}}
{{- if .Values.adapter.serviceAccount.create -}}
{{- default (include "trustplane-auth.fullname" .) .Values.adapter.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.adapter.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "trustplane-auth.broker.serviceAccountName" -}}
{{- $w := .Values.broker.workload -}}
{{- if $w.serviceAccount.create -}}
{{- default $w.name $w.serviceAccount.name -}}
{{- else -}}
{{- default "default" $w.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "trustplane-auth.upstreamNamespace" -}}
{{- default .Release.Namespace .Values.networkPolicy.upstream.namespace -}}
{{- end -}}

{{/* repository@digest (preferred) or repository:tag; neither is a render failure.
Call with (dict "image" .Values.adapter.image "path" "adapter.image"). */}}
{{- define "trustplane-auth.image" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else if .image.tag -}}
{{- printf "%s:%s" .image.repository .image.tag -}}
{{- else -}}
{{- fail (printf "%s.digest is required (or, less safely, %s.tag): images are pinned by digest, e.g. --set %s.digest=sha256:<64 hex> (see deploy/docker/README.md)" .path .path .path) -}}
{{- end -}}
{{- end -}}

{{/* The rules a schema cannot express. Included by the adapter Deployment. */}}
{{- define "trustplane-auth.adapter.validate" -}}
{{- $a := .Values.adapter -}}
{{- $replicas := int $a.replicas -}}
{{- if and (gt $replicas 1) (eq $a.replay.store "memory") -}}
{{- fail (printf "adapter.replicas=%d needs a shared replay store: with adapter.replay.store=memory each replica keeps its own replay state and would accept a replayed request once per replica. Set adapter.replay.store=redis with adapter.replay.redis.url or adapter.replay.redis.existingSecret.name, or adapter.replicas=1" $replicas) -}}
{{- end -}}
{{- if and (eq $a.replay.store "redis") (not $a.replay.redis.url) (not $a.replay.redis.existingSecret.name) -}}
{{- fail "adapter.replay.store=redis needs adapter.replay.redis.url or adapter.replay.redis.existingSecret.name" -}}
{{- end -}}
{{- if and $a.replay.redis.url $a.replay.redis.existingSecret.name -}}
{{- fail "give adapter.replay.redis.url or adapter.replay.redis.existingSecret.name, not both" -}}
{{- end -}}
{{- if not $a.upstream -}}
{{- fail "adapter.upstream is required: the protected API, e.g. http://orders.orders.svc.cluster.local:3000" -}}
{{- end -}}
{{- if not $a.bundles.name -}}
{{- fail (printf "adapter.bundles.name is required: the existing %s holding the signed %s and %s (the chart never creates bundle data)" $a.bundles.source $a.bundles.trustMaterialKey $a.bundles.policyBundleKey) -}}
{{- end -}}
{{- $k := $a.bundleSigningKeys -}}
{{- if and (not $k.publicKeys) (not $k.existingSecret.name) -}}
{{- fail "adapter.bundleSigningKeys.publicKeys (KID=B64URL, …) or adapter.bundleSigningKeys.existingSecret.name is required: the public keys that sign the bundles" -}}
{{- end -}}
{{- if and $k.publicKeys $k.existingSecret.name -}}
{{- fail "give adapter.bundleSigningKeys.publicKeys or adapter.bundleSigningKeys.existingSecret.name, not both" -}}
{{- end -}}
{{- if and (eq $a.routePolicyMode "route-id") (not $a.routeId) -}}
{{- fail "adapter.routePolicyMode=route-id needs adapter.routeId" -}}
{{- end -}}
{{- if eq (int $a.port) (int $a.adminPort) -}}
{{- fail (printf "adapter.port and adapter.adminPort are both %d: the proxy and the admin endpoints need ports of their own" (int $a.port)) -}}
{{- end -}}
{{- if le (int $a.terminationGracePeriodSeconds) (add (int $a.shutdownDelaySeconds) 10) -}}
{{- fail (printf "adapter.terminationGracePeriodSeconds=%d must exceed adapter.shutdownDelaySeconds (%d) plus the adapter's 10 s drain, or Kubernetes kills it mid-drain" (int $a.terminationGracePeriodSeconds) (int $a.shutdownDelaySeconds)) -}}
{{- end -}}
{{- $pdb := $a.podDisruptionBudget -}}
{{- if $pdb.enabled -}}
{{- $min := toString $pdb.minAvailable -}}
{{- $max := toString $pdb.maxUnavailable -}}
{{- if or (and (ne $min "") (or (eq $min "100%") (and (regexMatch "^[0-9]+$" $min) (ge (atoi $min) $replicas)))) (and (eq $min "") (or (eq $max "0") (eq $max "0%"))) -}}
{{- fail (printf "adapter.podDisruptionBudget would never allow an eviction with adapter.replicas=%d (minAvailable %q, maxUnavailable %q): node drains would hang. Lower it, or disable the budget" $replicas $min $max) -}}
{{- end -}}
{{- end -}}
{{- $np := .Values.networkPolicy -}}
{{- if and $np.enabled $np.adapter.egress.enabled (not $np.upstream.enabled) (not (and $np.upstream.podLabels $np.upstream.ports)) (not $np.adapter.egress.extraRules) -}}
{{- fail "networkPolicy.adapter.egress.enabled restricts the adapter's egress, but with networkPolicy.upstream.enabled=false nothing would let it reach the upstream: set networkPolicy.upstream.podLabels and ports (the egress rule uses them), add networkPolicy.adapter.egress.extraRules, or set networkPolicy.adapter.egress.enabled=false" -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.upstream.enabled -}}
{{- if not .Values.networkPolicy.upstream.podLabels -}}
{{- fail "networkPolicy.upstream.podLabels is required: the labels of the upstream API pods, so that only the adapter may reach them (or set networkPolicy.upstream.enabled=false and protect the upstream yourself)" -}}
{{- end -}}
{{- if not .Values.networkPolicy.upstream.ports -}}
{{- fail "networkPolicy.upstream.ports is required: the upstream API's container port(s)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "trustplane-auth.broker.validate" -}}
{{- $b := .Values.broker -}}
{{- if not $b.issuer -}}{{- fail "broker.issuer is required: the passport iss of the broker key, as listed in the trust material" -}}{{- end -}}
{{- if not $b.trustDomain -}}{{- fail "broker.trustDomain is required" -}}{{- end -}}
{{- if not $b.kid -}}{{- fail "broker.kid is required: the kid of the broker signing key in the trust material" -}}{{- end -}}
{{- if not $b.signingKey.secretName -}}{{- fail "broker.signingKey.secretName is required: an existing Secret with the broker's private key file (trustplane gen-key)" -}}{{- end -}}
{{- if not $b.allow -}}{{- fail "broker.allow needs at least one AUDIENCE or AUDIENCE=ROUTE,ROUTE" -}}{{- end -}}
{{- if and (not $b.softwareSubject) (not $b.spiffe.enabled) -}}
{{- fail "the broker needs a signer source: set broker.softwareSubject and/or broker.spiffe.enabled=true" -}}
{{- end -}}
{{- if and $b.allowSoftwareFallback (not $b.softwareSubject) -}}
{{- fail "broker.allowSoftwareFallback needs broker.softwareSubject" -}}
{{- end -}}
{{- end -}}

{{- define "trustplane-auth.broker.socketPath" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.broker.socketDir) .Values.broker.socketName -}}
{{- end -}}

{{/* The broker sidecar: a list with one Container. Umbrella charts can include it in their own
pod spec together with "trustplane-auth.broker.volumes". The SPIRE agent socket and the
signing key are mounted here and nowhere else. */}}
{{- define "trustplane-auth.broker.container" -}}
{{- include "trustplane-auth.broker.validate" . -}}
{{- $b := .Values.broker -}}
- name: trustplane-broker
  image: {{ include "trustplane-auth.image" (dict "image" $b.image "path" "broker.image") | quote }}
  imagePullPolicy: {{ $b.image.pullPolicy }}
  args:
    {{- range $b.allow }}
    - --allow
    - {{ . | quote }}
    {{- end }}
    {{- range $b.contextFields }}
    - --context-field
    - {{ . | quote }}
    {{- end }}
  env:
    - name: TRUSTPLANE_BROKER_SOCKET
      value: {{ include "trustplane-auth.broker.socketPath" . | quote }}
    - name: TRUSTPLANE_BROKER_SOCKET_GID
      value: {{ int $b.socketGid | quote }}
    - name: TRUSTPLANE_BROKER_ISSUER
      value: {{ $b.issuer | quote }}
    - name: TRUSTPLANE_BROKER_TRUST_DOMAIN
      value: {{ $b.trustDomain | quote }}
    - name: TRUSTPLANE_BROKER_KID
      value: {{ $b.kid | quote }}
    - name: TRUSTPLANE_BROKER_SIGNING_KEY
      value: {{ printf "/etc/trustplane/broker-key/%s" $b.signingKey.key | quote }}
    - name: TRUSTPLANE_BROKER_TTL
      value: {{ int $b.ttlSeconds | quote }}
    - name: TRUSTPLANE_BROKER_READ_TIMEOUT_MS
      value: {{ int $b.readTimeoutMs | quote }}
    - name: TRUSTPLANE_BROKER_AUDIT_LOG
      value: {{ $b.auditLog | quote }}
    {{- with $b.softwareSubject }}
    - name: TRUSTPLANE_BROKER_SOFTWARE_SUBJECT
      value: {{ . | quote }}
    {{- end }}
    {{- if $b.allowSoftwareFallback }}
    - name: TRUSTPLANE_BROKER_ALLOW_SOFTWARE_FALLBACK
      value: "true"
    {{- end }}
    {{- if $b.spiffe.enabled }}
    - name: TRUSTPLANE_BROKER_SPIFFE_SOCKET
      value: {{ printf "%s/%s" (trimSuffix "/" $b.spiffe.mountPath) $b.spiffe.socketName | quote }}
    - name: TRUSTPLANE_BROKER_SPIFFE_TRUST_DOMAIN
      value: {{ default $b.trustDomain $b.spiffe.trustDomain | quote }}
    {{- with $b.spiffe.idPrefix }}
    - name: TRUSTPLANE_BROKER_SPIFFE_ID_PREFIX
      value: {{ . | quote }}
    {{- end }}
    {{- end }}
    {{- with $b.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  {{- with $b.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  # The broker has no HTTP port: it is ready once its socket exists.
  startupProbe:
    exec:
      command: ["node", "-e", "process.exit(require('node:fs').statSync(process.env.TRUSTPLANE_BROKER_SOCKET,{throwIfNoEntry:false})?.isSocket()?0:1)"]
    periodSeconds: 2
    failureThreshold: 30
  readinessProbe:
    exec:
      command: ["node", "-e", "process.exit(require('node:fs').statSync(process.env.TRUSTPLANE_BROKER_SOCKET,{throwIfNoEntry:false})?.isSocket()?0:1)"]
    periodSeconds: 10
  volumeMounts:
    - name: trustplane-broker-socket
      mountPath: {{ $b.socketDir }}
    - name: trustplane-broker-key
      mountPath: /etc/trustplane/broker-key
      readOnly: true
    {{- if $b.spiffe.enabled }}
    - name: spiffe-workload-api
      mountPath: {{ $b.spiffe.mountPath }}
      readOnly: true
    {{- end }}
    - name: trustplane-broker-tmp
      mountPath: /tmp
{{- end -}}

{{/* The pod volumes the broker sidecar needs (a list). */}}
{{- define "trustplane-auth.broker.volumes" -}}
{{- $b := .Values.broker -}}
- name: trustplane-broker-socket
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
- name: trustplane-broker-key
  secret:
    secretName: {{ $b.signingKey.secretName }}
    defaultMode: 288 # 0440: owner and the pod fsGroup may read
    items:
      - key: {{ $b.signingKey.key }}
        path: {{ $b.signingKey.key }}
- name: trustplane-broker-tmp
  emptyDir:
    sizeLimit: 16Mi
{{- if $b.spiffe.enabled }}
- name: spiffe-workload-api
  {{- if eq $b.spiffe.socketVolume.type "csi" }}
  csi:
    driver: {{ $b.spiffe.socketVolume.csiDriver }}
    readOnly: true
  {{- else }}
  hostPath:
    path: {{ $b.spiffe.socketVolume.hostPath }}
    type: Directory
  {{- end }}
{{- end }}
{{- end -}}

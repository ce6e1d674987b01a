{{/*
Expand the name of the chart.
*/}}
{{- define "serving-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "serving-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "serving-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Namespace of the release's resources.
*/}}
{{- define "serving-exporter.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "serving-exporter.labels" -}}
helm.sh/chart: {{ include "serving-exporter.chart" . }}
{{ include "serving-exporter.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: serving-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "serving-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "serving-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "serving-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "serving-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image reference: repository:tag, with @digest when one is given.
*/}}
{{- define "serving-exporter.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
Number of shards (StatefulSet replicas), as an integer.
*/}}
{{- define "serving-exporter.shards" -}}
{{- int .Values.sharding.replicas }}
{{- end }}

{{/*
"true" when the chart runs a sharded StatefulSet.
*/}}
{{- define "serving-exporter.sharded" -}}
{{- if gt (int .Values.sharding.replicas) 1 }}true{{ end }}
{{- end }}

{{/*
Name of the Service: the fullname, or <fullname>-headless for a sharded StatefulSet. A different
name, not the same Service turned headless, because a Service's clusterIP cannot change in place.
*/}}
{{- define "serving-exporter.serviceName" -}}
{{- if include "serving-exporter.sharded" . }}
{{- printf "%s-headless" (include "serving-exporter.fullname" . | trunc 54 | trimSuffix "-") }}
{{- else }}
{{- include "serving-exporter.fullname" . }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the credentials: existingSecret, or the chart's own.
*/}}
{{- define "serving-exporter.secretName" -}}
{{- .Values.existingSecret | default (include "serving-exporter.fullname" .) }}
{{- end }}

{{/*
The credentials as a list of [value key envVar]: the chart's values, their key in the Secret, and
the environment variable the Databricks SDK or the Datadog sink reads.
*/}}
{{- define "serving-exporter.credentials" -}}
{{- $k := .Values.secretKeys }}
{{- list
  (list .Values.databricks.token $k.token "DATABRICKS_TOKEN")
  (list .Values.databricks.clientId $k.clientId "DATABRICKS_CLIENT_ID")
  (list .Values.databricks.clientSecret $k.clientSecret "DATABRICKS_CLIENT_SECRET")
  (list .Values.datadog.apiKey $k.datadogApiKey "DD_API_KEY")
  (list .Values.datadog.appKey $k.datadogAppKey "DD_APP_KEY")
  | toJson }}
{{- end }}

{{/*
The environment variables of a workspaces entry start with this: WORKSPACE_<NAME>, upper case, - as _.
*/}}
{{- define "serving-exporter.workspaceEnvPrefix" -}}
{{- printf "WORKSPACE_%s" (. | upper | replace "-" "_") }}
{{- end }}

{{/*
Each workspaces entry's credentials as environment variables read from its own Secret.
*/}}
{{- define "serving-exporter.workspaceEnv" -}}
{{- $env := list }}
{{- range .Values.workspaces }}
{{- $prefix := include "serving-exporter.workspaceEnvPrefix" .name }}
{{- $secret := .existingSecret }}
{{- range list (list .tokenKey "TOKEN") (list .clientIdKey "CLIENT_ID") (list .clientSecretKey "CLIENT_SECRET") }}
{{- if index . 0 }}
{{- $env = append $env (dict "name" (printf "%s_%s" $prefix (index . 1)) "valueFrom" (dict "secretKeyRef" (dict "name" $secret "key" (index . 0)))) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $env }}
{{- end }}

{{/*
Refuses workspaces entries that cannot work, naming the entry.
*/}}
{{- define "serving-exporter.validateWorkspaces" -}}
{{- $names := dict }}
{{- range $i, $w := .Values.workspaces }}
{{- $where := printf "workspaces[%d]" $i }}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$" (toString $w.name)) }}
{{- fail (printf "%s.name must be a short slug (lower case, digits, - and _): it is the workspace label" $where) }}
{{- end }}
{{- if hasKey $names (upper $w.name | replace "-" "_") }}
{{- fail (printf "%s.name %s: names must be unique (also once upper-cased with - as _)" $where $w.name) }}
{{- end }}
{{- $_ := set $names (upper $w.name | replace "-" "_") true }}
{{- if not $w.host }}
{{- fail (printf "%s.host is required" $where) }}
{{- end }}
{{- if not $w.existingSecret }}
{{- fail (printf "%s.existingSecret is required: the Secret holding this workspace's credentials" $where) }}
{{- end }}
{{- range list "token" "clientId" "clientSecret" }}
{{- if hasKey $w . }}
{{- fail (printf "%s.%s: credentials are never chart values; put them in the Secret %s and name its key (%sKey)" $where . $w.existingSecret .) }}
{{- end }}
{{- end }}
{{- if eq (empty $w.tokenKey) (and (empty $w.clientIdKey) (empty $w.clientSecretKey)) }}
{{- fail (printf "%s: set tokenKey or clientIdKey + clientSecretKey (one)" $where) }}
{{- end }}
{{- if ne (empty $w.clientIdKey) (empty $w.clientSecretKey) }}
{{- fail (printf "%s: clientIdKey and clientSecretKey go together" $where) }}
{{- end }}
{{- end }}
{{- if and .Values.workspaces (or .Values.databricks.host .Values.databricks.token .Values.databricks.clientId) }}
{{- fail "workspaces and databricks.* are two ways to name the workspace: set one" }}
{{- end }}
{{- end }}

{{/*
"true" when the chart renders its own Secret (some credential is set and there is no existingSecret).
*/}}
{{- define "serving-exporter.createSecret" -}}
{{- if not .Values.existingSecret }}
{{- range (include "serving-exporter.credentials" . | fromJsonArray) }}
{{- if index . 0 }}true{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Name of the ConfigMap holding selfHosted.fileSd.
*/}}
{{- define "serving-exporter.fileSdName" -}}
{{- printf "%s-file-sd" (include "serving-exporter.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/*
Path of the configuration file in the container.
*/}}
{{- define "serving-exporter.configDir" -}}
/etc/serving-exporter
{{- end }}

{{/*
Where the web configuration Secret is mounted (beside the configuration's directory, not inside it:
that one is a read-only ConfigMap volume).
*/}}
{{- define "serving-exporter.webConfigDir" -}}
/etc/serving-exporter-web
{{- end }}

{{/*
A probe's handler, for (list . PATH): an HTTP(S) GET of PATH, or the TCP port alone when the web
configuration asks for credentials or client certificates the kubelet cannot present.
*/}}
{{- define "serving-exporter.probe" -}}
{{- $ := index . 0 }}
{{- $port := include "serving-exporter.portName" $ }}
{{- if and $.Values.webConfig.secret $.Values.webConfig.authenticated }}
tcpSocket:
  port: {{ $port }}
{{- else }}
httpGet:
  path: {{ index . 1 }}
  port: {{ $port }}
  {{- if and $.Values.webConfig.secret $.Values.webConfig.tls }}
  scheme: HTTPS
  {{- end }}
{{- end }}
{{- end }}

{{/*
The configuration file's content (validated against the keys the chart manages itself), with
selfHosted.endpoints as its self_hosted.endpoints.
*/}}
{{- define "serving-exporter.configYaml" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- range list "listen" "shard_count" "shard_index" }}
{{- if hasKey $config . }}
{{- fail (printf "config.%s is set by the chart: use %s instead" . (ternary "containerPort and listenHost" "sharding.replicas" (eq . "listen"))) }}
{{- end }}
{{- end }}
{{- with .Values.workspaces }}
{{- if or (hasKey $config "workspaces") (hasKey $config "databricks") }}
{{- fail "workspaces is set: leave config.workspaces and config.databricks out (the chart writes config.workspaces)" }}
{{- end }}
{{- $list := list }}
{{- range . }}
{{- $w := dict "name" .name "host" .host }}
{{- $env := include "serving-exporter.workspaceEnvPrefix" .name }}
{{- if .tokenKey }}
{{- $_ := set $w "token_env" (printf "%s_TOKEN" $env) }}
{{- else }}
{{- $_ := set $w "client_id_env" (printf "%s_CLIENT_ID" $env) }}
{{- $_ := set $w "client_secret_env" (printf "%s_CLIENT_SECRET" $env) }}
{{- end }}
{{- $list = append $list $w }}
{{- end }}
{{- $_ := set $config "workspaces" $list }}
{{- end }}
{{- with .Values.selfHosted.endpoints }}
{{- if hasKey $config "self_hosted" }}
{{- fail "selfHosted.endpoints and config.self_hosted are the same setting: use selfHosted.endpoints" }}
{{- end }}
{{- $_ := set $config "self_hosted" (dict "endpoints" .) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
Where selfHosted.secrets are mounted (one directory per Secret) and where the selfHosted.fileSd
ConfigMap is mounted; beside the configuration's directory, not inside it.
*/}}
{{- define "serving-exporter.secretsDir" -}}
/etc/serving-exporter-secrets
{{- end }}

{{- define "serving-exporter.fileSdDir" -}}
/etc/serving-exporter-sd
{{- end }}

{{/*
The volume name of a selfHosted.secrets entry (a DNS label; a Secret's name may hold dots).
*/}}
{{- define "serving-exporter.secretVolumeName" -}}
{{- printf "se-secret-%s" (.name | replace "." "-") | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Checks on selfHosted.endpoints; renders nothing. Secrets by reference only, and every token,
password or file_sd file an endpoint names is in a directory the container mounts, so a typo fails
the install rather than every scrape.
*/}}
{{- define "serving-exporter.validateSelfHosted" -}}
{{- $mounted := list }}
{{- range .Values.selfHosted.secrets }}
{{- $mounted = append $mounted (printf "%s/%s/" (include "serving-exporter.secretsDir" $) .name) }}
{{- end }}
{{- if .Values.selfHosted.fileSd }}
{{- $mounted = append $mounted (printf "%s/" (include "serving-exporter.fileSdDir" .)) }}
{{- end }}
{{- range .Values.extraVolumeMounts }}
{{- $mounted = append $mounted (printf "%s/" (trimSuffix "/" .mountPath)) }}
{{- end }}
{{- $loopback := `^https?://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?(/.*)?$` }}
{{- range $e := .Values.selfHosted.endpoints }}
{{- $where := printf "selfHosted.endpoints[%s]" ($e.name | default "?") }}
{{- $auth := $e.auth | default dict }}
{{- $basic := $auth.basic_auth | default dict }}
{{- range $key := list "bearer_token" "token" "password" }}
{{- if or (hasKey $auth $key) (hasKey $basic $key) }}
{{- fail (printf "%s.auth: %s is a secret written inline; name it by reference (bearer_token_file, password_file in a selfHosted.secrets Secret, or bearer_token_env, password_env from extraEnv)" $where $key) }}
{{- end }}
{{- end }}
{{- $files := list }}
{{- /* Not ca_file: a CA bundle may be part of a custom image. */}}
{{- with $auth.bearer_token_file }}{{ $files = append $files (list "auth.bearer_token_file" .) }}{{ end }}
{{- with $basic.password_file }}{{ $files = append $files (list "auth.basic_auth.password_file" .) }}{{ end }}
{{- range $e.file_sd }}{{ $files = append $files (list "file_sd" .) }}{{ end }}
{{- range $files }}
{{- $path := index . 1 | toString }}
{{- $found := false }}
{{- range $mounted }}{{ if hasPrefix . $path }}{{ $found = true }}{{ end }}{{ end }}
{{- if not $found }}
{{- fail (printf "%s.%s: %s is in no directory the container mounts: add its Secret to selfHosted.secrets (mounted at %s/<name>/), its file_sd file to selfHosted.fileSd (%s/), or mount it with extraVolumes and extraVolumeMounts" $where (index . 0) $path (include "serving-exporter.secretsDir" $) (include "serving-exporter.fileSdDir" $)) }}
{{- end }}
{{- end }}
{{- if $.Values.sidecar.enabled }}
{{- if or (not $e.targets) $e.dns $e.file_sd }}
{{- fail (printf "%s: a sidecar scrapes its own pod's model server: give targets [\"http://127.0.0.1:PORT/metrics\"], not dns or file_sd" $where) }}
{{- end }}
{{- range $e.targets }}
{{- if not (regexMatch $loopback .) }}
{{- fail (printf "%s: a sidecar scrapes its own pod's model server on the loopback address (http://127.0.0.1:PORT/metrics), not %s" $where .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.sidecar.enabled (gt (len .Values.selfHosted.endpoints) 1) }}
{{- fail "sidecar mode polls the one model server of its pod: give one selfHosted.endpoints entry" }}
{{- end }}
{{- end }}

{{/*
The TCP ports of the self-hosted endpoints' metrics, for the NetworkPolicy: networkPolicy.egress.metricsPorts,
or those of dns.port and of the target URLs (80 or 443 when a URL has none).
*/}}
{{- define "serving-exporter.metricsPorts" -}}
{{- $ports := .Values.networkPolicy.egress.metricsPorts | default list }}
{{- if not $ports }}
{{- range $e := .Values.selfHosted.endpoints }}
{{- if or $e.file_sd (and $e.dns (eq (toString $e.dns.type) "SRV")) }}
{{- fail (printf "selfHosted.endpoints[%s] finds its ports at run time (SRV or file_sd): list them in networkPolicy.egress.metricsPorts" $e.name) }}
{{- end }}
{{- with $e.dns }}{{ $ports = append $ports (int .port) }}{{ end }}
{{- range $e.targets }}
{{- $port := regexReplaceAll "^[a-zA-Z]+://[^/]*:([0-9]+)(/.*)?$" . "${1}" }}
{{- if not (regexMatch "^[0-9]+$" $port) }}
{{- $port = ternary "443" "80" (hasPrefix "https:" (lower .)) }}
{{- end }}
{{- $ports = append $ports (int $port) }}
{{- end }}
{{- end }}
{{- end }}
{{- uniq $ports | toJson }}
{{- end }}

{{/*
Checks on combinations of values; renders nothing.
*/}}
{{- define "serving-exporter.validate" -}}
{{- $shards := int .Values.sharding.replicas }}
{{- if lt $shards 1 }}
{{- fail "sharding.replicas must be at least 1" }}
{{- end }}
{{- if and (gt $shards 1) (gt (int .Values.replicaCount) 1) }}
{{- fail "sharding.replicas > 1 runs one pod per shard: leave replicaCount at 1" }}
{{- end }}
{{- if and .Values.sidecar.enabled (gt $shards 1) }}
{{- fail "sidecar.enabled and sharding.replicas > 1 exclude each other: a sidecar polls the endpoint of its own pod" }}
{{- end }}
{{- if and .Values.sidecar.enabled .Values.serviceMonitor.enabled (not .Values.sidecar.podSelector) }}
{{- fail "sidecar.podSelector is required for the PodMonitor (serviceMonitor.enabled in sidecar mode)" }}
{{- end }}
{{- if gt (len .Values.sidecar.portName) 15 }}
{{- fail "sidecar.portName must be at most 15 characters" }}
{{- end }}
{{- if .Values.existingSecret }}
{{- range (include "serving-exporter.credentials" . | fromJsonArray) }}
{{- if index . 0 }}
{{- fail (printf "existingSecret is set: leave the credential values empty (%s is set)" (index . 2)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.databricks.token (or .Values.databricks.clientId .Values.databricks.clientSecret) }}
{{- fail "databricks.token and databricks.clientId/clientSecret are two authentication methods: set one (the Databricks SDK refuses both)" }}
{{- end }}
{{- if ne (empty .Values.databricks.clientId) (empty .Values.databricks.clientSecret) }}
{{- fail "databricks.clientId and databricks.clientSecret go together" }}
{{- end }}
{{- if and (or .Values.webConfig.tls .Values.webConfig.authenticated) (not .Values.webConfig.secret) }}
{{- fail "webConfig.tls and webConfig.authenticated describe the web configuration file: set webConfig.secret too" }}
{{- end }}
{{- $_ := include "serving-exporter.configYaml" . }}
{{- include "serving-exporter.validateSelfHosted" . }}
{{- include "serving-exporter.validateWorkspaces" . }}
{{- end }}

{{/*
The listen address for --listen: HOST:PORT, with brackets around an IPv6 host.
*/}}
{{- define "serving-exporter.listen" -}}
{{- $host := .Values.listenHost | toString }}
{{- if and (contains ":" $host) (not (hasPrefix "[" $host)) }}
{{- $host = printf "[%s]" $host }}
{{- end }}
{{- printf "%s:%d" $host (int .Values.containerPort) }}
{{- end }}

{{/*
Name of the exporter's container port: "http", or sidecar.portName in sidecar mode.
*/}}
{{- define "serving-exporter.portName" -}}
{{- if .Values.sidecar.enabled }}{{ .Values.sidecar.portName }}{{ else }}http{{ end }}
{{- end }}

{{/*
Pod annotations that restart the pods when the configuration or the chart's Secret changes.
*/}}
{{- define "serving-exporter.checksums" -}}
checksum/config: {{ include "serving-exporter.configYaml" . | sha256sum }}
{{- if include "serving-exporter.createSecret" . }}
checksum/secret: {{ include "serving-exporter.secretData" . | sha256sum }}
{{- end }}
{{- end }}

{{/*
The data of the chart's Secret.
*/}}
{{- define "serving-exporter.secretData" -}}
{{- range (include "serving-exporter.credentials" . | fromJsonArray) }}
{{- if index . 0 }}
{{ index . 1 }}: {{ index . 0 | toString | b64enc }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The exporter container. Used by this chart's Deployment and StatefulSet and, through
"serving-exporter.sidecar", by other charts.
*/}}
{{- define "serving-exporter.container" -}}
{{- include "serving-exporter.validate" . -}}
{{- $portName := include "serving-exporter.portName" . -}}
- name: {{ if .Values.sidecar.enabled }}{{ .Values.sidecar.containerName }}{{ else }}{{ .Chart.Name }}{{ end }}
  image: {{ include "serving-exporter.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and .Values.sidecar.enabled .Values.sidecar.nativeSidecar }}
  restartPolicy: Always
  {{- end }}
  args:
    - --config
    - {{ include "serving-exporter.configDir" . }}/config.yaml
    - --listen
    - {{ include "serving-exporter.listen" . | quote }}
    {{- if .Values.webConfig.secret }}
    - --web.config.file
    - {{ include "serving-exporter.webConfigDir" . }}/web-config.yml
    {{- end }}
    {{- range .Values.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  {{- $env := list }}
  {{- if include "serving-exporter.sharded" . }}
  {{- /* The shard index comes from the ordinal ending the pod name (HOSTNAME). */}}
  {{- $env = append $env (dict "name" "SERVING_EXPORTER_SHARD_COUNT" "value" (include "serving-exporter.shards" .)) }}
  {{- end }}
  {{- with .Values.databricks.host }}
  {{- $env = append $env (dict "name" "DATABRICKS_HOST" "value" (toString .)) }}
  {{- end }}
  {{- with .Values.datadog.site }}
  {{- $env = append $env (dict "name" "DD_SITE" "value" (toString .)) }}
  {{- end }}
  {{- $secret := include "serving-exporter.secretName" . }}
  {{- $existing := .Values.existingSecret }}
  {{- range (include "serving-exporter.credentials" . | fromJsonArray) }}
  {{- if or $existing (index . 0) }}
  {{- $ref := dict "name" $secret "key" (index . 1) }}
  {{- if $existing }}
  {{- $_ := set $ref "optional" true }}
  {{- end }}
  {{- $env = append $env (dict "name" (index . 2) "valueFrom" (dict "secretKeyRef" $ref)) }}
  {{- end }}
  {{- end }}
  {{- $env = concat $env (include "serving-exporter.workspaceEnv" . | fromJsonArray) }}
  {{- $env = concat $env (.Values.extraEnv | default list) }}
  {{- with $env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: {{ $portName }}
      containerPort: {{ int .Values.containerPort }}
      protocol: TCP
  livenessProbe:
    {{- include "serving-exporter.probe" (list . "/healthz") | nindent 4 }}
    {{- toYaml .Values.livenessProbe | nindent 4 }}
  {{- if not .Values.sidecar.enabled }}
  readinessProbe:
    {{- include "serving-exporter.probe" (list . "/readyz") | nindent 4 }}
    {{- toYaml .Values.readinessProbe | nindent 4 }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: serving-exporter-config
      mountPath: {{ include "serving-exporter.configDir" . }}
      readOnly: true
    - name: serving-exporter-tmp
      mountPath: /tmp
    {{- if .Values.webConfig.secret }}
    - name: serving-exporter-web
      mountPath: {{ include "serving-exporter.webConfigDir" . }}
      readOnly: true
    {{- end }}
    {{- range .Values.selfHosted.secrets }}
    - name: {{ include "serving-exporter.secretVolumeName" . }}
      mountPath: {{ include "serving-exporter.secretsDir" $ }}/{{ .name }}
      readOnly: true
    {{- end }}
    {{- if .Values.selfHosted.fileSd }}
    - name: serving-exporter-file-sd
      mountPath: {{ include "serving-exporter.fileSdDir" . }}
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
The volumes the exporter container mounts.
*/}}
{{- define "serving-exporter.volumes" -}}
- name: serving-exporter-config
  configMap:
    name: {{ include "serving-exporter.fullname" . }}
- name: serving-exporter-tmp
  emptyDir:
    {{- with .Values.tmpSizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- with .Values.webConfig.secret }}
- name: serving-exporter-web
  secret:
    secretName: {{ . }}
{{- end }}
{{- range .Values.selfHosted.secrets }}
- name: {{ include "serving-exporter.secretVolumeName" . }}
  secret:
    secretName: {{ .name }}
    {{- with .items }}
    items:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
{{- if .Values.selfHosted.fileSd }}
- name: serving-exporter-file-sd
  configMap:
    name: {{ include "serving-exporter.fileSdName" . }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Sidecar mode, for other charts. In a chart that has serving-exporter as a dependency (with
sidecar.enabled: true in its values for it), inside a pod template:

  metadata:
    annotations:
      {{- include "serving-exporter.sidecarAnnotations" (index .Subcharts "serving-exporter") | nindent 8 }}
  spec:
    enableServiceLinks: false   # else a Service named serving-exporter* injects SERVING_EXPORTER_* variables
    containers:
      - name: model-server
        ...
      {{- include "serving-exporter.sidecar" (index .Subcharts "serving-exporter") | nindent 6 }}
    volumes:
      {{- include "serving-exporter.sidecarVolumes" (index .Subcharts "serving-exporter") | nindent 6 }}

The argument is the dependency's own context (.Subcharts.<name or alias>), so names, values and
the image default resolve exactly as in this chart. The container has a liveness probe but no
readiness probe: a sidecar waiting for its first poll (or without working credentials) must not
take the model server's pod out of its Service. See helm/examples/model-server/ and
docs/kubernetes.md.
*/}}
{{- define "serving-exporter.sidecar" -}}
{{- if not .Values.sidecar.enabled }}
{{- fail "serving-exporter.sidecar: set sidecar.enabled: true in the values for the serving-exporter dependency" }}
{{- end }}
{{- include "serving-exporter.container" . }}
{{- end }}

{{- define "serving-exporter.sidecarVolumes" -}}
{{- include "serving-exporter.volumes" . }}
{{- end }}

{{- define "serving-exporter.sidecarAnnotations" -}}
{{- include "serving-exporter.checksums" . }}
{{- end }}

{{/*
Labels of the vLLM pods (the headless Service and the PodMonitor select them).
*/}}
{{- define "vllm-server.selectorLabels" -}}
app.kubernetes.io/name: vllm-server
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The sidecar's configuration must describe this pod's vLLM: its port and its --max-num-seqs.
Renders nothing; fails on a mismatch.
*/}}
{{- define "vllm-server.checkSidecar" -}}
{{- $exporter := index .Subcharts "serving-exporter" }}
{{- $endpoints := $exporter.Values.selfHosted.endpoints }}
{{- if ne (len $endpoints) 1 }}
{{- fail "serving-exporter.selfHosted.endpoints: give the one endpoint of this pod's vLLM" }}
{{- end }}
{{- $endpoint := index $endpoints 0 }}
{{- $target := printf "http://127.0.0.1:%d/metrics" (int .Values.vllm.port) }}
{{- if ne (toJson $endpoint.targets) (toJson (list $target)) }}
{{- fail (printf "serving-exporter.selfHosted.endpoints[0].targets must be [%q] (vllm.port)" $target) }}
{{- end }}
{{- if ne (float64 ($endpoint.per_replica_concurrency | default 0)) (float64 .Values.vllm.maxNumSeqs) }}
{{- fail (printf "serving-exporter.selfHosted.endpoints[0].per_replica_concurrency must equal vllm.maxNumSeqs (%v)" .Values.vllm.maxNumSeqs) }}
{{- end }}
{{- end }}

{{- define "tessera.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tessera.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tessera.labels" -}}
app.kubernetes.io/name: {{ include "tessera.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tessera.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tessera.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The gRPC port, from config.server.listen. */}}
{{- define "tessera.port" -}}
{{- $listen := .Values.config.server.listen | toString -}}
{{- last (splitList ":" $listen) -}}
{{- end -}}

{{- define "tessera.embeddedStore" -}}
{{- if and .Values.config.identity (hasPrefix "sqlite://" (toString .Values.config.identity.store)) -}}true{{- end -}}
{{- end -}}

{{/* The Prometheus port, from config.telemetry.prometheus_listen (empty when off). */}}
{{- define "tessera.metricsPort" -}}
{{- with .Values.config.telemetry -}}
{{- with .prometheus_listen -}}
{{- last (splitList ":" (toString .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Names and labels shared by every template.
*/}}

{{- define "bakeoff.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object's name: the release name, unless it already contains the chart name.
Truncated so that "<fullname>-controller-leader-election" still fits in 63 characters.
*/}}
{{- define "bakeoff.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "bakeoff.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bakeoff.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "bakeoff.labels" -}}
helm.sh/chart: {{ include "bakeoff.chart" . }}
{{ include "bakeoff.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bakeoff
{{- end }}

{{- define "bakeoff.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bakeoff.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "bakeoff.controller.fullname" -}}
{{- printf "%s-controller" (include "bakeoff.fullname" .) }}
{{- end }}

{{- define "bakeoff.router.fullname" -}}
{{- printf "%s-router" (include "bakeoff.fullname" .) }}
{{- end }}

{{/* The Lease the controller replicas elect a leader with (in the release namespace). */}}
{{- define "bakeoff.controller.leaseName" -}}
{{- include "bakeoff.controller.fullname" . }}
{{- end }}

{{- define "bakeoff.controller.serviceAccountName" -}}
{{- default (include "bakeoff.controller.fullname" .) .Values.serviceAccount.controller.name }}
{{- end }}

{{- define "bakeoff.router.serviceAccountName" -}}
{{- default (include "bakeoff.router.fullname" .) .Values.serviceAccount.router.name }}
{{- end }}

{{- define "bakeoff.controller.selectorLabels" -}}
{{ include "bakeoff.selectorLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "bakeoff.router.selectorLabels" -}}
{{ include "bakeoff.selectorLabels" . }}
app.kubernetes.io/component: router
{{- end }}

{{- define "bakeoff.controller.labels" -}}
{{ include "bakeoff.labels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "bakeoff.router.labels" -}}
{{ include "bakeoff.labels" . }}
app.kubernetes.io/component: router
bakeoff.dev/router-for: {{ .Values.router.bakeoff | quote }}
{{- end }}

{{/* The writable /tmp every pod mounts (the root filesystem is read-only). */}}
{{- define "bakeoff.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{- define "bakeoff.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* The namespace the controller runs Bakeoffs in; empty when cluster-wide without a watchNamespace. */}}
{{- define "bakeoff.controller.watchNamespace" -}}
{{- if .Values.controller.clusterWide }}
{{- .Values.controller.watchNamespace }}
{{- else }}
{{- .Values.controller.watchNamespace | default .Release.Namespace }}
{{- end }}
{{- end }}

{{- define "bakeoff.router.eventsSecretName" -}}
{{- .Values.router.eventsToken.existingSecret | default (printf "%s-events" (include "bakeoff.router.fullname" .)) }}
{{- end }}

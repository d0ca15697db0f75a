{{/* Labels every object carries. */}}
{{- define "holdfast.labels" -}}
app.kubernetes.io/name: holdfast
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* Labels the DaemonSet selects its pods by; immutable once installed. */}}
{{- define "holdfast.selectorLabels" -}}
app.kubernetes.io/name: holdfast
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "holdfast.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "holdfast.policyConfigMap" -}}
{{ .Values.policies.existingConfigMap | default (printf "%s-policies" .Release.Name) }}
{{- end }}

{{/* The engine socket, as the containers see it (the run host path). */}}
{{- define "holdfast.socket" -}}
/run/holdfast/engine.sock
{{- end }}

{{- define "hostplane.labels" -}}
app.kubernetes.io/name: hostplane-operator
app.kubernetes.io/part-of: hostplane
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "hostplane.selector" -}}
app.kubernetes.io/name: hostplane-operator
{{- end }}

{{- define "hostplane.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default (printf "v%s" .Chart.AppVersion) }}
{{- end }}

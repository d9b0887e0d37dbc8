{{/* Labels every object carries; the selector labels are the kustomize base's (app.kubernetes.io/name). */}}
{{- define "goverse.labels" -}}
app.kubernetes.io/part-of: goverse
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "goverse.image" -}}
{{- if eq (toString .Values.image.tag) "latest" -}}
{{- fail "image.tag: `latest` is not allowed (a re-pushed tag changes what a restarted pod runs); use a version" -}}
{{- end -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Pod securityContext: restricted PSS; fixed ids unless podSecurityContext.fixedIds is false. */}}
{{- define "goverse.podSecurity" -}}
runAsNonRoot: true
{{- if .root.Values.podSecurityContext.fixedIds }}
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
{{- if .fsGroup }}
fsGroup: {{ .uid }}
{{- end }}
{{- end }}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "goverse.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{- define "goverse.identityEnv" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
# Go's soft memory limit from the container's memory limit (seed §2.8).
- name: GOMEMLIMIT
  valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: "1"}}
{{- end -}}

{{- define "goverse.postgresSecret" -}}
{{ .Values.postgres.auth.existingSecret | default "goverse-postgres" }}
{{- end -}}

{{- define "goverse.etcdEndpoints" -}}
{{- if .Values.etcd.enabled -}}
["goverse-etcd:2379"]
{{- else -}}
{{- if not .Values.etcd.external.endpoints -}}
{{- fail "etcd.external.endpoints: give at least one endpoint when etcd.enabled is false" -}}
{{- end -}}
{{ toJson .Values.etcd.external.endpoints }}
{{- end -}}
{{- end -}}

{{- define "goverse.postgresHost" -}}
{{- if .Values.postgres.enabled -}}
goverse-postgres
{{- else -}}
{{ required "postgres.external.host: set it when postgres.enabled is false" .Values.postgres.external.host }}
{{- end -}}
{{- end -}}

{{- define "goverse.checksum" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end -}}

{{- define "goverse.secretVolume" -}}
- name: secrets
  secret:
    secretName: {{ include "goverse.postgresSecret" . }}
    defaultMode: 0440
    items: [{key: postgres-password, path: postgres-password}]
{{- end -}}

{{/* The main image of a component: the reference image, or Goverse's image for it (never latest). */}}
{{- define "goverse.componentImage" -}}
{{- if eq .root.Values.stack "goverse" -}}
{{- $img := index .root.Values.goverse.images .component -}}
{{- if or (hasSuffix ":latest" $img) (not (contains ":" (last (splitList "/" $img)))) -}}
{{- fail (printf "goverse.images.%s: %q is latest or untagged; use a version (`:<sha7>`)" .component $img) -}}
{{- end -}}
{{ $img }}
{{- else -}}
{{ include "goverse.image" .root }}
{{- end -}}
{{- end -}}

{{/* stack=goverse: the init container that renders this pod's config (render-config.sh). */}}
{{- define "goverse.renderInit" -}}
- name: render-config
  image: {{ .root.Values.goverse.renderImage }}
  command: [sh, /opt/goverse-render/render-config.sh]
  env:
    - {name: COMPONENT, value: {{ .component }}}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    {{- range $k, $v := .ports }}
    - {name: {{ $k }}, value: {{ $v | quote }}}
    {{- end }}
    {{- if .postgres }}
    - name: POSTGRES_USER
      valueFrom: {secretKeyRef: {name: {{ include "goverse.postgresSecret" .root }}, key: postgres-user}}
    - {name: POSTGRES_PASSWORD_FILE, value: /etc/goverse-secrets/postgres-password}
    {{- if not .root.Values.postgres.enabled }}
    - {name: POSTGRES_HOST, value: {{ .root.Values.postgres.external.host | quote }}}
    - {name: POSTGRES_PORT, value: {{ .root.Values.postgres.external.port | quote }}}
    {{- end }}
    {{- end }}
  resources:
    requests: {cpu: 10m, memory: 16Mi}
    limits: {cpu: 100m, memory: 32Mi}
  securityContext:
    {{- include "goverse.containerSecurity" . | nindent 4 }}
  volumeMounts:
    - {name: config, mountPath: /etc/goverse, readOnly: true}
    - {name: render-script, mountPath: /opt/goverse-render, readOnly: true}
    - {name: rendered, mountPath: /run/goverse}
    {{- if .postgres }}
    - {name: secrets, mountPath: /etc/goverse-secrets, readOnly: true}
    {{- end }}
{{- end -}}

{{- define "goverse.renderVolumes" -}}
- name: rendered
  emptyDir: {medium: Memory, sizeLimit: 1Mi}
- name: render-script
  configMap: {name: goverse-render, defaultMode: 0555}
{{- end -}}

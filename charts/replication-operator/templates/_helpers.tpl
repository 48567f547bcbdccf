{{- define "ro.name" -}}replication-operator{{- end -}}
{{- define "ro.fullname" -}}
{{- if contains (include "ro.name" .) .Release.Name }}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}{{ printf "%s-%s" .Release.Name (include "ro.name" .) | trunc 63 | trimSuffix "-" }}{{ end }}
{{- end -}}
{{- define "ro.serviceAccountName" -}}{{ default (include "ro.fullname" .) .Values.serviceAccount.name }}{{- end -}}
{{- define "ro.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ro.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "ro.labels" -}}
{{ include "ro.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{/* Exactly the calls the operator makes (replication_operator/check.py lists them too). */}}
{{- define "ro.rules" -}}
- apiGroups: ["replication.dbops.dev"]
  resources: [databaseservers, replications, replicationpolicies, tokens]
  verbs: [get, list, watch, patch]
- apiGroups: ["replication.dbops.dev"]
  resources: [databaseservers/status, replications/status, replicationpolicies/status, tokens/status]
  verbs: [patch]
# a ReplicationPolicy on CouchDB/ReductStore creates and removes its child Replications
- apiGroups: ["replication.dbops.dev"]
  resources: [replications]
  verbs: [create, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create, update, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
{{/* Leader election is on when asked for and whenever more than one replica runs. */}}
{{- define "ro.leaderElection" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.leaderElection.enabled }}true{{ end -}}
{{- end -}}

{{/* Names and labels, as `helm create` makes them. */}}
{{- define "regsweep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "regsweep.fullname" -}}
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

{{- define "regsweep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regsweep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Every object's labels: the chart's own, then the object's own extra labels (podLabels,
metrics.serviceMonitor.labels), then commonLabels; the first to set a key wins, so neither can
change the selector and component labels the chart relies on.
"regsweep.labels" is the operator's; "regsweep.componentLabels" takes
(list $ "component") or (list $ "component" $extraLabels).
*/}}
{{- define "regsweep.componentLabels" -}}
{{- $ := index . 0 }}
{{- $own := dict
  "helm.sh/chart" (printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-")
  "app.kubernetes.io/name" (include "regsweep.name" $)
  "app.kubernetes.io/instance" $.Release.Name
  "app.kubernetes.io/version" $.Chart.AppVersion
  "app.kubernetes.io/managed-by" $.Release.Service
  "app.kubernetes.io/component" (index . 1)
}}
{{- $extra := dict }}
{{- if gt (len .) 2 }}{{ $extra = default dict (index . 2) }}{{ end }}
{{- toYaml (merge $own (deepCopy $extra) (deepCopy (default dict $.Values.commonLabels))) }}
{{- end }}

{{- define "regsweep.labels" -}}
{{- include "regsweep.componentLabels" (list . "operator") }}
{{- end }}

{{- define "regsweep.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "regsweep.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's image; the sweep Job's init container uses the same reference. */}}
{{- define "regsweep.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "regsweep.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* In-use namespaces: as set, else the watched ones (empty: every namespace). */}}
{{- define "regsweep.inUseNamespaces" -}}
{{- toJson (default .Values.watchNamespaces .Values.inUseNamespaces) }}
{{- end }}

{{/*
The permissions, one list per scope. They are exactly `regsweep rbac` (src/operator/rbac.rs);
tests/chart checks the rendered Roles against it.
*/}}
{{- define "regsweep.rules.policies" -}}
- apiGroups: [regsweep.dev]
  resources: [registrycleanuppolicies]
  verbs: [get, list, watch, patch]
- apiGroups: [regsweep.dev]
  resources: [registrycleanuppolicies/status]
  verbs: [patch]
# Lets the sweep Job's ownerReference block the policy's deletion where the
# OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift).
- apiGroups: [regsweep.dev]
  resources: [registrycleanuppolicies/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [persistentvolumeclaims, secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [services]
  verbs: [list]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{- define "regsweep.rules.inUse" -}}
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets, replicasets]
  verbs: [list]
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [list]
{{- end }}

{{- define "regsweep.rules.leaderElection" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "regsweep.fullname" . }}]
  verbs: [get, update]
{{- end }}

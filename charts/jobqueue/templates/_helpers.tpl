{{/* Names: <release>-<chart> unless the release name holds the chart name; 63 characters. */}}
{{- define "jobqueue.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jobqueue.fullname" -}}
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

{{/* The operator's objects are <fullname>-operator; 63 characters in all. */}}
{{- define "jobqueue.operatorName" -}}
{{- printf "%s-operator" (include "jobqueue.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "jobqueue.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: never the chart version, so an upgrade can keep its selectors
(a Deployment's selector is immutable). */}}
{{- define "jobqueue.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobqueue.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jobqueue.labels" -}}
helm.sh/chart: {{ include "jobqueue.chart" . }}
{{ include "jobqueue.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jobqueue
{{- end }}

{{- define "jobqueue.operatorSelectorLabels" -}}
{{ include "jobqueue.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "jobqueue.operatorLabels" -}}
{{ include "jobqueue.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "jobqueue.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jobqueue.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: the ServiceAccount to run the operator as (serviceAccount.create is false)" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jobqueue.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "jobqueue.metricsServiceName" -}}
{{- printf "%s-metrics" (include "jobqueue.operatorName" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{/* The labels the operator puts on every worker metrics Service (see
operator/jobqueue_operator/manifests.py). */}}
{{- define "jobqueue.workerServiceLabels" -}}
app.kubernetes.io/name: jobqueue-worker
app.kubernetes.io/managed-by: jobqueue-operator
{{- end }}

{{/* The rules of one ClusterRole of a file of deploy/ (files/ links to them): the one
source, a test compares them. Arguments: (dict "root" $ "file" "files/rbac.yaml" "role"
"jobqueue-operator"). */}}
{{- define "jobqueue.clusterRoleRules" -}}
{{- $rules := list }}
{{- range $document := regexSplit "(?m)^---\\s*$" (.root.Files.Get .file) -1 }}
{{- $object := fromYaml $document }}
{{- if and (eq (get $object "kind") "ClusterRole") (eq (dig "metadata" "name" "" $object) $.role) }}
{{- $rules = $object.rules }}
{{- end }}
{{- end }}
{{- if not $rules }}
{{- fail (printf "%s (a link into deploy/) has no ClusterRole %s with rules" .file .role) }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/* The operator's rules: those of deploy/rbac.yaml, and with peering those of
deploy/peering.yaml, which kopf needs to watch the peering object and keep its entry alive. */}}
{{- define "jobqueue.operatorRules" -}}
{{- include "jobqueue.clusterRoleRules" (dict "root" . "file" "files/rbac.yaml" "role" "jobqueue-operator") }}
{{- if .Values.operator.peering }}
{{ include "jobqueue.clusterRoleRules" (dict "root" . "file" "files/peering.yaml" "role" "jobqueue-operator-peering") }}
{{- end }}
{{- end }}

{{/* Non-empty when the API server serves JobQueues (their CRD is established). */}}
{{- define "jobqueue.jobQueuesServed" -}}
{{- if .Capabilities.APIVersions.Has "jobqueue.dev/v1alpha1/JobQueue" }}true{{ end }}
{{- end }}

{{- define "jobqueue.jobQueueName" -}}
{{- default (include "jobqueue.fullname" .) .Values.jobQueue.name }}
{{- end }}

{{/* The annotations of the pre-delete hook's objects: made before the uninstall deletes
anything, removed once it succeeded (a failed one stays for a look, replaced next time). */}}
{{- define "jobqueue.preDeleteHook" -}}
helm.sh/hook: pre-delete
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/* The web UI's objects are <fullname>-ui; 63 characters in all. */}}
{{- define "jobqueue.uiName" -}}
{{- printf "%s-ui" (include "jobqueue.fullname" . | trunc 60 | trimSuffix "-") }}
{{- end }}

{{- define "jobqueue.uiSelectorLabels" -}}
{{ include "jobqueue.selectorLabels" . }}
app.kubernetes.io/component: ui
{{- end }}

{{- define "jobqueue.uiLabels" -}}
{{ include "jobqueue.labels" . }}
app.kubernetes.io/component: ui
{{- end }}

{{- define "jobqueue.uiServiceAccountName" -}}
{{- if .Values.ui.serviceAccount.create }}
{{- default (include "jobqueue.uiName" .) .Values.ui.serviceAccount.name }}
{{- else }}
{{- required "ui.serviceAccount.name: the ServiceAccount to run the UI as (ui.serviceAccount.create is false)" .Values.ui.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jobqueue.uiImage" -}}
{{- $image := .Values.ui.image }}
{{- $tag := default .Chart.AppVersion $image.tag }}
{{- if $image.digest }}
{{- printf "%s:%s@%s" $image.repository $tag $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret and key of the UI's DATABASE_URL: ui.database's, else those of the chart's
own JobQueue (jobQueue.spec.database.secretRef, the workers' own), else jobqueue-db and url,
the Secret of deploy/example-jobqueue.yaml and of the notes. */}}
{{- define "jobqueue.uiDatabaseSecret" -}}
{{- $workers := dict }}
{{- if .Values.jobQueue.enabled }}
{{- $workers = dig "database" "secretRef" (dict) .Values.jobQueue.spec }}
{{- end }}
{{- $name := .Values.ui.database.existingSecret | default (get $workers "name") | default "jobqueue-db" }}
{{- $key := .Values.ui.database.key | default (get $workers "key") | default "url" }}
{{- toYaml (dict "name" $name "key" $key) }}
{{- end }}

{{/* The Secret of the UI's tokens: without one the UI refuses to serve anything but
localhost, so the chart refuses to render the UI without it. */}}
{{- define "jobqueue.uiAuthSecret" -}}
{{- if not .Values.ui.auth.existingSecret }}
{{- fail "ui.enabled needs ui.auth.existingSecret: the name of a Secret holding the UI's tokens (key ui.auth.adminTokenKey, default admin-token; optionally ui.auth.viewerTokenKey, default viewer-token, for read-only access). Without a token the UI refuses to start. Make one with: kubectl create secret generic jobqueue-ui --from-literal=admin-token=$(openssl rand -hex 32)" }}
{{- end }}
{{- .Values.ui.auth.existingSecret }}
{{- end }}

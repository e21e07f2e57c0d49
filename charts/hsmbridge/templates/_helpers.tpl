{{/*
Names. They are fixed, not derived from the release name: the CRD, the ClusterRoles and the
MutatingWebhookConfiguration are cluster-scoped, so there is one hsmbridge per cluster, and the
operator, its RBAC (operator/deploy/rbac.yaml) and the tests share these names.
*/}}
{{- define "hsmbridge.operatorName" -}}hsm-operator{{- end }}
{{- define "hsmbridge.serviceAccountName" -}}hsm-operator{{- end }}
{{- define "hsmbridge.webhookConfigName" -}}hsmbridge-injector{{- end }}
{{- define "hsmbridge.webhookServiceName" -}}hsmbridge-webhook{{- end }}
{{- define "hsmbridge.metricsServiceName" -}}hsm-operator-metrics{{- end }}
{{- define "hsmbridge.webhookSecretName" -}}hsmbridge-webhook-tls{{- end }}
{{/* The leader-election Lease (templates/lease.yaml; the operator gets it as --leader-election-lease). */}}
{{- define "hsmbridge.leaseName" -}}hsm-operator-leader{{- end }}
{{- define "hsmbridge.certificateName" -}}hsmbridge-webhook{{- end }}
{{- define "hsmbridge.selfSignedIssuerName" -}}hsmbridge-selfsigned{{- end }}
{{/* Where the cert-manager Secret is mounted in the operator pods. */}}
{{- define "hsmbridge.webhookCertDir" -}}/var/run/hsmbridge/webhook-tls{{- end }}

{{- define "hsmbridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object; `helm uninstall` leaves nothing carrying them but the kept CRD. */}}
{{- define "hsmbridge.labels" -}}
helm.sh/chart: {{ include "hsmbridge.chart" . }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hsmbridge
{{- end }}

{{/* The operator pods' selector labels (stable across upgrades: Deployment selectors are immutable). */}}
{{- define "hsmbridge.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "hsmbridge.operatorLabels" -}}
{{ include "hsmbridge.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* image REF: repository@digest, else repository:tag (tag defaults to the appVersion). Call with (list . .Values.x.image). */}}
{{- define "hsmbridge.image" -}}
{{- $root := index . 0 }}
{{- $img := index . 1 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the operator manages its own serving certificate. */}}
{{- define "hsmbridge.selfManagedTLS" -}}
{{- if not .Values.webhook.certManager.enabled }}true{{- end }}
{{- end }}

{{/*
The HsmPartition CRD outlives the release that created it (helm.sh/resource-policy: keep) and then
still carries that release's ownership metadata (meta.helm.sh/release-name/-namespace). Helm refuses
to adopt an object owned by another release, so an install under another name or namespace would
fail on it. Hence the chart renders the CRD only when it is absent or already this release's, and
otherwise leaves it alone (neither changed nor deleted by this release; NOTES.txt says how to hand
it over). Without a cluster (`helm template`) lookup finds nothing and the CRD is rendered.

hsmbridge.crdForeignOwner: empty when the CRD is absent or this release's; else who owns it.
*/}}
{{- define "hsmbridge.crdName" -}}hsmpartitions.hsmbridge.io{{- end }}
{{- define "hsmbridge.crdForeignOwner" -}}
{{- $crd := lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" (include "hsmbridge.crdName" .) }}
{{- if $crd }}
{{- $annotations := $crd.metadata.annotations | default dict }}
{{- $labels := $crd.metadata.labels | default dict }}
{{- $name := index $annotations "meta.helm.sh/release-name" | default "" }}
{{- $namespace := index $annotations "meta.helm.sh/release-namespace" | default "" }}
{{- $helm := eq (index $labels "app.kubernetes.io/managed-by" | default "") "Helm" }}
{{- if not (and $helm (eq $name .Release.Name) (eq $namespace .Release.Namespace)) }}
{{- if and $helm $name }}release {{ $name }} in namespace {{ $namespace }}{{ else }}no Helm release (applied outside Helm){{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/* True (non-empty) when this release renders the CRD: crds.enabled and no other owner. */}}
{{- define "hsmbridge.renderCRD" -}}
{{- if and .Values.crds.enabled (not (include "hsmbridge.crdForeignOwner" .)) }}true{{- end }}
{{- end }}

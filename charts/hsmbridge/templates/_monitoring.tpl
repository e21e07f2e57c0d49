{{/*
Optional monitoring objects (values monitoring.*; all off by default): templates/servicemonitor.yaml,
podmonitor.yaml, prometheusrule.yaml, grafana-dashboard.yaml. Their content lives in files/ (the
rules and the dashboard), where scripts/check-monitoring.py checks it without helm.
*/}}
{{- define "hsmbridge.serviceMonitorName" -}}hsm-operator{{- end }}
{{- define "hsmbridge.podMonitorName" -}}hsmbridge-sidecars{{- end }}
{{- define "hsmbridge.prometheusRuleName" -}}hsmbridge{{- end }}
{{- define "hsmbridge.grafanaDashboardName" -}}hsmbridge-grafana-dashboard{{- end }}

{{/*
hsmbridge.monitoringLabels (list . EXTRA): the chart's labels, component monitoring, and the labels
of the map EXTRA (e.g. what a Prometheus' serviceMonitorSelector or ruleSelector matches). The
chart's own labels win over EXTRA's (`helm uninstall` and its checks rely on them).
*/}}
{{- define "hsmbridge.monitoringLabels" -}}
{{- $root := index . 0 }}
{{- $extra := index . 1 | default dict }}
{{- $labels := include "hsmbridge.labels" $root | fromYaml }}
{{- $_ := set $labels "app.kubernetes.io/component" "monitoring" }}
{{- toYaml (merge $labels $extra) }}
{{- end }}

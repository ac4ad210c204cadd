{{/* Traefik's arguments: a routed entrypoint, its own entrypoint for /ping, and the Consul
Catalog provider reading the catalog from the agent of the proxy's node (or the servers). */}}
{{- define "registry.proxyArgs" -}}
{{- $p := .Values.trafficProxy -}}
- --entrypoints.web.address=:{{ int $p.port }}
- --entrypoints.traefik.address=:{{ int $p.adminPort }}
- --ping=true
- --ping.entrypoint=traefik
- --global.checknewversion=false
- --global.sendanonymoususage=false
- --log.level={{ get (dict "trace" "DEBUG" "debug" "DEBUG" "info" "INFO" "warn" "WARN" "err" "ERROR" "error" "ERROR") (lower .Values.global.logLevel) | default "INFO" }}
{{- if .Values.global.logJSON }}
- --log.format=json
{{- end }}
- --providers.consulcatalog=true
{{- if include "registry.tlsEnabled" . }}
- --providers.consulcatalog.endpoint.address={{ include "registry.agentHTTPHost" . }}:8501
- --providers.consulcatalog.endpoint.scheme=https
- --providers.consulcatalog.endpoint.tls.ca=/registry/tls/ca/tls.crt
{{- else }}
- --providers.consulcatalog.endpoint.address={{ include "registry.agentHTTPHost" . }}:8500
- --providers.consulcatalog.endpoint.scheme=http
{{- end }}
{{- if include "registry.aclsEnabled" . }}
- --providers.consulcatalog.endpoint.token=$(CONSUL_HTTP_TOKEN)
{{- end }}
- --providers.consulcatalog.endpoint.datacenter={{ .Values.global.datacenter }}
- --providers.consulcatalog.prefix={{ $p.prefix }}
- --providers.consulcatalog.exposedbydefault={{ $p.exposedByDefault }}
- --providers.consulcatalog.refreshinterval={{ $p.refreshInterval }}
- --providers.consulcatalog.watch={{ $p.watch }}
- --providers.consulcatalog.strictchecks={{ $p.strictChecks }}
{{- range $p.extraArgs }}
- {{ . }}
{{- end }}
{{- end -}}

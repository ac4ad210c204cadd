{{/* The k8s-sync flags from syncCatalog values (names as consul-k8s sync-catalog's). */}}
{{- define "registry.syncArgs" -}}
{{- $s := .Values.syncCatalog -}}
- -consul-domain={{ .Values.global.domain }}
- -to-consul={{ $s.toConsul }}
- -to-k8s={{ $s.toK8S }}
- -k8s-default-sync={{ $s.default }}
{{- range $s.k8sAllowNamespaces }}
- -allow-k8s-namespace={{ . }}
{{- end }}
{{- range $s.k8sDenyNamespaces }}
- -deny-k8s-namespace={{ . }}
{{- end }}
{{- with $s.k8sSourceNamespace }}
- -k8s-source-namespace={{ . }}
{{- end }}
- -add-k8s-namespace-suffix={{ $s.addK8SNamespaceSuffix }}
{{- with $s.consulPrefix }}
- -consul-service-prefix={{ . }}
{{- end }}
{{- with $s.k8sPrefix }}
- -k8s-service-prefix={{ . }}
{{- end }}
{{- with $s.k8sTag }}
- -consul-k8s-tag={{ . }}
{{- end }}
- -consul-node-name={{ $s.consulNodeName }}
- -sync-clusterip-services={{ $s.syncClusterIPServices }}
- -sync-lb-services-endpoints={{ $s.syncLoadBalancerEndpoints }}
- -use-endpoint-slices={{ $s.useEndpointSlices }}
- -node-port-sync-type={{ $s.nodePortSyncType }}
{{- with $s.consulWriteInterval }}
- -consul-write-interval={{ . }}
{{- end }}
- -k8s-write-namespace=$(NAMESPACE)
- -log-level={{ $s.logLevel | default .Values.global.logLevel }}
- -log-json={{ .Values.global.logJSON }}
{{- end -}}

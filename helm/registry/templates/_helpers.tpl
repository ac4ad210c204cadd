{{/*
Names, labels and shared fragments of the registry chart.
*/}}

{{/* The chart's name: the `app` label of every object. */}}
{{- define "registry.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object's name: global.name, else "<release>-registry" (the release name
alone when it already contains "registry"). */}}
{{- define "registry.fullname" -}}
{{- if .Values.global.name -}}
{{- .Values.global.name | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The `chart` label. It is part of selectors, which a StatefulSet or DaemonSet cannot
change on upgrade, so it never carries the chart version. */}}
{{- define "registry.chartLabel" -}}registry-helm{{- end -}}

{{/* Labels of every object's metadata; call with (dict "ctx" $ "component" "server"). */}}
{{- define "registry.labels" -}}
app: {{ template "registry.name" .ctx }}
chart: {{ template "registry.chartLabel" }}
heritage: {{ .ctx.Release.Service }}
release: {{ .ctx.Release.Name }}
{{- if .component }}
component: {{ .component }}
{{- end }}
{{- with .ctx.Values.global.extraLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of a component's pods; stable across chart versions. */}}
{{- define "registry.selectorLabels" -}}
app: {{ template "registry.name" .ctx }}
chart: {{ template "registry.chartLabel" }}
release: {{ .ctx.Release.Name }}
component: {{ .component }}
{{- end -}}

{{/* "true" when a component with the "-" convention is on; call with
(dict "value" .Values.server.enabled "ctx" $). */}}
{{- define "registry.isEnabled" -}}
{{- if eq (toString .value) "-" -}}
{{- if .ctx.Values.global.enabled -}}true{{- end -}}
{{- else if .value -}}true{{- end -}}
{{- end -}}

{{- define "registry.serverEnabled" -}}
{{- include "registry.isEnabled" (dict "value" .Values.server.enabled "ctx" .) -}}
{{- end -}}

{{- define "registry.clientEnabled" -}}
{{- include "registry.isEnabled" (dict "value" .Values.client.enabled "ctx" .) -}}
{{- end -}}

{{- define "registry.dnsEnabled" -}}
{{- include "registry.isEnabled" (dict "value" .Values.dns.enabled "ctx" .) -}}
{{- end -}}

{{- define "registry.uiEnabled" -}}
{{- include "registry.isEnabled" (dict "value" .Values.ui.enabled "ctx" .) -}}
{{- end -}}

{{/* bootstrap_expect: server.bootstrapExpect, else server.replicas. */}}
{{- define "registry.bootstrapExpect" -}}
{{- if .Values.server.bootstrapExpect -}}
{{- .Values.server.bootstrapExpect -}}
{{- else -}}
{{- .Values.server.replicas -}}
{{- end -}}
{{- end -}}

{{/* The servers' headless Service name. */}}
{{- define "registry.serverService" -}}
{{- printf "%s-server" (include "registry.fullname" .) -}}
{{- end -}}

{{/* One join address per server pod: <pod>.<headless service>.<namespace>.svc:<LAN port>.
Every address names exactly one pod, so a join never depends on which address of a
multi-address name the resolver returns first. */}}
{{- define "registry.serverJoinAddrs" -}}
{{- $svc := include "registry.serverService" . -}}
{{- $addrs := list -}}
{{- range $i := until (int .Values.server.replicas) -}}
{{- $addrs = append $addrs (printf "%s-%d.%s.%s.svc:%d" $svc $i $svc $.Release.Namespace (int $.Values.server.ports.serflan.port)) -}}
{{- end -}}
{{- toJson $addrs -}}
{{- end -}}

{{/* The HTTP address an in-cluster client (k8s-sync, the proxy) talks to: the agent on its
node when clients run, else the servers. Needs HOST_IP in the pod's environment. */}}
{{- define "registry.agentHTTPHost" -}}
{{- if include "registry.clientEnabled" . -}}
$(HOST_IP)
{{- else -}}
{{- printf "%s.%s.svc" (include "registry.serverService" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The k8s-sync image. */}}
{{- define "registry.imageK8S" -}}
{{- .Values.syncCatalog.image | default .Values.global.imageK8S | default .Values.global.image -}}
{{- end -}}

{{/* imagePullSecrets of a pod spec. */}}
{{- define "registry.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ .name | default . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The downward-API environment every agent container gets. */}}
{{- define "registry.downwardEnv" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: HOST_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
{{- end -}}

{{/* Placement of a workload: nodeSelector, affinity, tolerations, topology spread and
priorityClassName from one component's values; call with (dict "v" .Values.server "ctx" $). */}}
{{- define "registry.placement" -}}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- tpl (toString .) $.ctx | trim | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity:
  {{- tpl (toString .) $.ctx | trim | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- tpl (toString .) $.ctx | trim | nindent 2 }}
{{- end }}
{{- with .v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- tpl (toString .) $.ctx | trim | nindent 2 }}
{{- end }}
{{- with .v.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Extra volumes (server.extraVolumes / client.extraVolumes): the volumes. */}}
{{- define "registry.extraVolumes" -}}
{{- range .v }}
- name: userconfig-{{ .name }}
  {{ .type }}:
    {{- if eq .type "configMap" }}
    name: {{ .name }}
    {{- else if eq .type "secret" }}
    secretName: {{ .name }}
    {{- end }}
    {{- with .items }}
    items:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* Extra volumes: the mounts. */}}
{{- define "registry.extraVolumeMounts" -}}
{{- range .v }}
- name: userconfig-{{ .name }}
  readOnly: true
  mountPath: /registry/userconfig/{{ .name }}
{{- end }}
{{- end -}}

{{/* Extra volumes: the -config-dir arguments of those with load: true. */}}
{{- define "registry.extraVolumeArgs" -}}
{{- range .v }}
{{- if .load }}
- -config-dir=/registry/userconfig/{{ .name }}
{{- end }}
{{- end }}
{{- end -}}

{{/* extraEnvironmentVars as container env entries. */}}
{{- define "registry.extraEnv" -}}
{{- range $k, $v := .v }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{- /* Gossip encryption (global.gossipEncryption): the key comes from a Secret into the
GOSSIP_KEY env var, and `-encrypt=$(GOSSIP_KEY)` passes it to the agent (Kubernetes expands
$(VAR) in args, so no shell is needed and the key never appears in the pod spec). */ -}}
{{- define "registry.gossipEnabled" -}}
{{- if or .Values.global.gossipEncryption.secretName .Values.global.gossipEncryption.autoGenerate }}true{{ end -}}
{{- end -}}

{{- /* The Secret holding the gossip key: the user's, or the one the gossip-encryption-
autogenerate hook Job creates. */ -}}
{{- define "registry.gossipSecretName" -}}
{{- if .Values.global.gossipEncryption.autoGenerate -}}
{{- printf "%s-gossip-encryption-key" (include "registry.fullname" .) -}}
{{- else -}}
{{- .Values.global.gossipEncryption.secretName -}}
{{- end -}}
{{- end -}}

{{- define "registry.gossipSecretKey" -}}
{{- if .Values.global.gossipEncryption.autoGenerate -}}key{{- else -}}{{- .Values.global.gossipEncryption.secretKey -}}{{- end -}}
{{- end -}}

{{- define "registry.gossipEnv" -}}
{{- if include "registry.gossipEnabled" . }}
- name: GOSSIP_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "registry.gossipSecretName" . }}
      key: {{ include "registry.gossipSecretKey" . }}
{{- end }}
{{- end -}}

{{- define "registry.gossipArgs" -}}
{{- if include "registry.gossipEnabled" . }}
- -encrypt=$(GOSSIP_KEY)
{{- end }}
{{- end -}}

{{- /* TLS (global.tls), as consul-k8s: the CA certificate and key come from Secrets; an init
container of each agent pod runs `registry tls cert create` from them into the tls-certs
emptyDir (a server certificate with the pod's DNS names and IP on servers, a client
certificate, which names localhost and the pod and host IPs, on clients: the clients serve
HTTPS with it and present it to servers that verify_incoming), and the agent configuration points at those files. */ -}}
{{- define "registry.tlsEnabled" -}}
{{- if .Values.global.tls.enabled }}true{{ end -}}
{{- end -}}

{{- define "registry.tlsCertFile" -}}
/registry/tls/certs/{{ .ctx.Values.global.datacenter }}-{{ .role }}-{{ .ctx.Values.global.domain }}-0
{{- end -}}

{{- /* The agent's HTTP address for the probes and the CLI inside the pod. */ -}}
{{- define "registry.localHTTPArgs" -}}
{{- if include "registry.tlsEnabled" . }}
- -http-addr=https://127.0.0.1:8501
- -ca-file=/registry/tls/ca/tls.crt
{{- else }}
- -http-addr=127.0.0.1:8500
{{- end }}
{{- end -}}

{{- /* The "tls" and "ports" entries of an agent's JSON configuration. */ -}}
{{- define "registry.tlsConfig" -}}
{{- $tls := .ctx.Values.global.tls -}}
{{- if include "registry.tlsEnabled" .ctx }}
"tls": {
  "defaults": {
    "ca_file": "/registry/tls/ca/tls.crt",
    "cert_file": "{{ include "registry.tlsCertFile" . }}.pem",
    "key_file": "{{ include "registry.tlsCertFile" . }}-key.pem",
    "verify_outgoing": true
  },
  "internal_rpc": {
    "verify_incoming": {{ and (eq .role "server") $tls.verify | ternary true false }},
    "verify_server_hostname": {{ $tls.verify | ternary true false }}
  },
  "https": {
    "verify_incoming": false
  }
},
{{- end }}
"ports": {
  "http": {{ if and (include "registry.tlsEnabled" .ctx) $tls.httpsOnly }}-1{{ else }}8500{{ end }},
  {{- if include "registry.tlsEnabled" .ctx }}
  "https": 8501,
  {{- end }}
  "dns": 8600,
  {{- if eq .role "server" }}
  "server": 8300,
  {{- end }}
  "serf_lan": {{ int .ctx.Values.server.ports.serflan.port }}
},
{{- end -}}

{{- define "registry.tlsVolumes" -}}
{{- $tls := .ctx.Values.global.tls -}}
{{- if include "registry.tlsEnabled" .ctx }}
- name: tls-ca-cert
  secret:
    secretName: {{ $tls.caCert.secretName }}
    items:
      - key: {{ $tls.caCert.secretKey }}
        path: tls.crt
- name: tls-ca-key
  secret:
    secretName: {{ $tls.caKey.secretName }}
    items:
      - key: {{ $tls.caKey.secretKey }}
        path: tls.key
- name: tls-certs
  emptyDir:
    medium: Memory
{{- end }}
{{- end -}}

{{- define "registry.tlsVolumeMounts" -}}
{{- $tls := .ctx.Values.global.tls -}}
{{- if include "registry.tlsEnabled" .ctx }}
- name: tls-ca-cert
  mountPath: /registry/tls/ca
  readOnly: true
- name: tls-certs
  mountPath: /registry/tls/certs
  readOnly: true
{{- end }}
{{- end -}}

{{- /* The init container writing the agent's certificate. `registry tls cert create` never
overwrites: after a restart of the pod the first certificate (…-0.pem) stays in use. */ -}}
{{- define "registry.tlsInitContainer" -}}
{{- $ctx := .ctx -}}
{{- $tls := $ctx.Values.global.tls -}}
{{- $v := index $ctx.Values .role -}}
{{- if include "registry.tlsEnabled" $ctx }}
- name: tls-init
  image: {{ $ctx.Values.global.image | quote }}
  imagePullPolicy: {{ $ctx.Values.global.imagePullPolicy }}
  workingDir: /registry/tls/certs
  command:
    - /usr/local/bin/registry
  args:
    - tls
    - cert
    - create
    - -{{ .role }}
    - -dc={{ $ctx.Values.global.datacenter }}
    - -domain={{ $ctx.Values.global.domain }}
    - -ca=/registry/tls/ca/tls.crt
    - -key=/registry/tls/ca-key/tls.key
    {{- if eq .role "server" }}
    {{- $svc := include "registry.serverService" $ctx }}
    {{- $ns := $ctx.Release.Namespace }}
    - -node=$(POD_NAME)
    - -additional-dnsname=$(POD_NAME).{{ $svc }}
    - -additional-dnsname=$(POD_NAME).{{ $svc }}.{{ $ns }}
    - -additional-dnsname=$(POD_NAME).{{ $svc }}.{{ $ns }}.svc
    - -additional-dnsname={{ $svc }}
    - -additional-dnsname={{ $svc }}.{{ $ns }}
    - -additional-dnsname={{ $svc }}.{{ $ns }}.svc
    {{- range $tls.serverAdditionalDNSSANs }}
    - -additional-dnsname={{ . }}
    {{- end }}
    - -additional-ipaddress=$(POD_IP)
    {{- range $tls.serverAdditionalIPSANs }}
    - -additional-ipaddress={{ . }}
    {{- end }}
    {{- else }}
    - -additional-ipaddress=$(POD_IP)
    - -additional-ipaddress=$(HOST_IP)
    {{- end }}
  env:
    {{- include "registry.downwardEnv" $ctx | nindent 4 }}
  {{- with $v.containerSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: tls-ca-cert
      mountPath: /registry/tls/ca
      readOnly: true
    - name: tls-ca-key
      mountPath: /registry/tls/ca-key
      readOnly: true
    - name: tls-certs
      mountPath: /registry/tls/certs
{{- end }}
{{- end -}}

{{- /* ACLs (global.acls.manageSystemACLs), as consul-k8s: the agents run with a deny
default policy; the acl-init Job bootstraps the ACL system and writes each component's
token to the Secret "<fullname>-<component>-acl-token" (key "token"), from which the pods
read it into env vars (Kubernetes expands $(VAR) in args, so tokens never appear in the pod
spec). A pod whose Secret does not exist yet waits for the Job, as the kubelet retries. */ -}}
{{- define "registry.aclsEnabled" -}}
{{- if .Values.global.acls.manageSystemACLs }}true{{ end -}}
{{- end -}}

{{- define "registry.aclSecretName" -}}
{{- printf "%s-%s-acl-token" (include "registry.fullname" .ctx) .component -}}
{{- end -}}

{{- /* The "acl" entry of an agent's JSON configuration. */ -}}
{{- define "registry.aclConfig" -}}
{{- if include "registry.aclsEnabled" . }}
"acl": {
  "enabled": true,
  "default_policy": "deny",
  "down_policy": "extend-cache",
  "enable_token_persistence": true
},
{{- end }}
{{- end -}}

{{- /* The management token's Secret and key: the user's (global.acls.bootstrapToken), else the
one the acl-init Job writes. */ -}}
{{- define "registry.bootstrapTokenRef" -}}
{{- $b := .Values.global.acls.bootstrapToken | default dict -}}
{{- if $b.secretName -}}
name: {{ $b.secretName }}
key: {{ $b.secretKey }}
{{- else -}}
name: {{ include "registry.aclSecretName" (dict "ctx" . "component" "bootstrap") }}
key: token
{{- end -}}
{{- end -}}

{{- /* An env var holding a component's token; call with (dict "ctx" $ "component" "client"
"env" "ACL_TOKEN"). */ -}}
{{- define "registry.aclTokenEnv" -}}
{{- if include "registry.aclsEnabled" .ctx }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      {{- if eq .component "bootstrap" }}
      {{- include "registry.bootstrapTokenRef" .ctx | nindent 6 }}
      {{- else }}
      name: {{ include "registry.aclSecretName" . }}
      key: token
      {{- end }}
{{- end }}
{{- end -}}

{{- /* The readiness probe's command: ready once this agent knows a leader that answers
(`operator raft list-peers`); with ACLs, which deny that to a probe without a token, once it
knows a leader (`registry ready` reads /v1/status/leader, open to anonymous requests). */ -}}
{{- define "registry.readinessCommand" -}}
- /usr/local/bin/registry
{{- if include "registry.aclsEnabled" . }}
- ready
{{- else }}
- operator
- raft
- list-peers
{{- end }}
{{- include "registry.localHTTPArgs" . }}
{{- end -}}

{{- /* The agent URL in-cluster clients (k8s-sync, its cleanup hook, the proxy) talk to:
HTTPS on 8501 with global.tls (verified against the CA: a client agent's certificate names
the host IP, a server's the server Service), else HTTP on 8500. */ -}}
{{- define "registry.agentHTTPURL" -}}
{{- if include "registry.tlsEnabled" . -}}
https://{{ include "registry.agentHTTPHost" . }}:8501
{{- else -}}
http://{{ include "registry.agentHTTPHost" . }}:8500
{{- end -}}
{{- end -}}

{{- /* With global.tls: the CA certificate volume of an in-cluster client's pod ... */ -}}
{{- define "registry.tlsCAVolume" -}}
{{- if include "registry.tlsEnabled" . }}
volumes:
  - name: tls-ca-cert
    secret:
      secretName: {{ .Values.global.tls.caCert.secretName }}
      items:
        - key: {{ .Values.global.tls.caCert.secretKey }}
          path: tls.crt
{{- end }}
{{- end -}}

{{- /* ... and its mount. */ -}}
{{- define "registry.tlsCAMount" -}}
{{- if include "registry.tlsEnabled" . }}
volumeMounts:
  - name: tls-ca-cert
    mountPath: /registry/tls/ca
    readOnly: true
{{- end }}
{{- end -}}

{{- /* k8s-sync's token: the acl-init Job's with manageSystemACLs, else the user's
syncCatalog.aclSyncToken Secret (for agents whose ACLs are set up outside the chart). */ -}}
{{- define "registry.syncTokenEnv" -}}
{{- if include "registry.aclsEnabled" . }}
{{- include "registry.aclTokenEnv" (dict "ctx" . "component" "catalog-sync" "env" "CONSUL_HTTP_TOKEN") }}
{{- else if .Values.syncCatalog.aclSyncToken.secretName }}
- name: CONSUL_HTTP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.syncCatalog.aclSyncToken.secretName }}
      key: {{ .Values.syncCatalog.aclSyncToken.secretKey }}
{{- end }}
{{- end -}}

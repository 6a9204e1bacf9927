{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "seckill.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name: the prefix of every object. */}}
{{- define "seckill.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "seckill.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "seckill.labels" -}}
helm.sh/chart: {{ include "seckill.chart" . }}
app.kubernetes.io/name: {{ include "seckill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: seckill
app.kubernetes.io/version: {{ include "seckill.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector of every pod of this release. */}}
{{- define "seckill.releaseSelector" -}}
app.kubernetes.io/name: {{ include "seckill.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector of one service's pods: (dict "root" $ "name" $name). */}}
{{- define "seckill.selectorLabels" -}}
{{ include "seckill.releaseSelector" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{/* Name of one service's objects: (dict "root" $ "name" $name). */}}
{{- define "seckill.componentName" -}}
{{- printf "%s-%s" (include "seckill.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "seckill.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "seckill.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "seckill.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* repository:tag, or repository:tag@digest when a digest is set. */}}
{{- define "seckill.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "seckill.imageTag" .) -}}
{{- if .Values.image.digest -}}
{{- $ref = printf "%s@%s" $ref .Values.image.digest -}}
{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* One service's shutdown settings: the global ones overridden by its own. */}}
{{- define "seckill.shutdown" -}}
{{- $s := deepCopy .root.Values.shutdown -}}
{{- range $k, $v := (default dict .svc.shutdown) }}{{ $_ := set $s $k $v }}{{ end -}}
{{- toJson $s -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds: the preStop sleep, the serving delay and the drain, rounded up
to whole seconds, plus the time to close the stores and exit.
*/}}
{{- define "seckill.gracePeriod" -}}
{{- $s := fromJson (include "seckill.shutdown" .) -}}
{{- $delay := div (add (int64 $s.delayMs) 999) 1000 -}}
{{- $drain := div (add (int64 $s.timeoutMs) 999) 1000 -}}
{{- add (int64 $s.preStopSleepSeconds) $delay $drain (int64 $s.closeSeconds) -}}
{{- end -}}

{{/* True when a service may ever run more than one pod (autoscaling included). */}}
{{- define "seckill.mayScaleOut" -}}
{{- if .autoscaling.enabled -}}
{{- if gt (int .autoscaling.maxReplicas) 1 -}}true{{- end -}}
{{- else if gt (int .replicas) 1 -}}true{{- end -}}
{{- end -}}

{{/* The fewest pods a service runs: replicas, or minReplicas under autoscaling. */}}
{{- define "seckill.minPods" -}}
{{- if .autoscaling.enabled -}}{{ .autoscaling.minReplicas }}{{- else -}}{{ .replicas }}{{- end -}}
{{- end -}}

{{/* REDIS_URL from the Secret when one is named. */}}
{{- define "seckill.redisEnv" -}}
{{- if .Values.secrets.redis.name }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.redis.name }}
      key: {{ .Values.secrets.redis.key }}
{{- end }}
{{- end -}}

{{- define "seckill.mysqlEnv" -}}
- name: MYSQL_URI
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.mysql.name is required: an existing Secret with MYSQL_URI" .Values.secrets.mysql.name }}
      key: {{ .Values.secrets.mysql.key }}
{{- end -}}

{{/* The container environment one service gets from what it uses: (dict "root" $ "name" $name "svc" $svc). */}}
{{- define "seckill.storeEnv" -}}
{{- $root := .root -}}
{{- $uses := .svc.uses -}}
{{- if has "redis" $uses }}
{{- include "seckill.redisEnv" $root }}
{{- end }}
{{- if has "mysql" $uses }}
{{ include "seckill.mysqlEnv" $root }}
{{- end }}
{{- if has "jwtPrivateKeys" $uses }}
{{- if $root.Values.authDevKeys }}
- name: AUTH_DEV_KEYS
  value: "true"
- name: NODE_ENV
  value: development
{{- else }}
- name: JWT_PRIVATE_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.jwtPrivateKeys.name is required (or authDevKeys=true in development)" $root.Values.secrets.jwtPrivateKeys.name }}
      key: {{ $root.Values.secrets.jwtPrivateKeys.key }}
{{- end }}
{{- end }}
{{- if has "buyToken" $uses }}
- name: BUY_TOKEN_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.buyToken.name is required: an existing Secret with BUY_TOKEN_SECRET" $root.Values.secrets.buyToken.name }}
      key: {{ $root.Values.secrets.buyToken.key }}
{{- end }}
{{- if and (has "adminBootstrap" $uses) $root.Values.secrets.adminBootstrap.name }}
- name: ADMIN_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.adminBootstrap.name }}
      key: {{ $root.Values.secrets.adminBootstrap.usernameKey }}
- name: ADMIN_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.adminBootstrap.name }}
      key: {{ $root.Values.secrets.adminBootstrap.passwordKey }}
{{- end }}
{{- end -}}

{{/* Hardened pod and container settings shared by every workload of the chart. */}}
{{- define "seckill.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "seckill.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{- define "seckill.gatewayName" -}}
{{- include "seckill.componentName" (dict "root" . "name" "gateway") -}}
{{- end -}}

{{/*
Names, labels and the pieces every collector shares.
*/}}

{{- define "ollyscale-otel.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ollyscale-otel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The namespace rule: the collectors are addressed by otel-system FQDNs. */}}
{{- define "ollyscale-otel.checkNamespace" -}}
{{- if and (ne .Release.Namespace .Values.global.namespace) (not .Values.global.allowOtherNamespace) -}}
{{- fail (printf "ollyscale-otel must be installed into namespace %q (global.namespace), not %q: apps, the main ollyscale chart and the collectors' own configs address the collectors by their %s FQDNs (gateway-collector-headless.%s.svc.cluster.local, ...). Use --namespace %s, or set global.allowOtherNamespace=true and adjust those names yourself." .Values.global.namespace .Release.Namespace .Values.global.namespace .Values.global.namespace .Values.global.namespace) -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "ollyscale-otel.labels" -}}
helm.sh/chart: {{ include "ollyscale-otel.chart" . }}
app.kubernetes.io/name: {{ include "ollyscale-otel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ollyscale
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* commonAnnotations, as a metadata block (nothing when empty). */}}
{{- define "ollyscale-otel.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Selector labels of one role: (dict "root" $ "role" "gateway"). */}}
{{- define "ollyscale-otel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ollyscale-otel.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
ollyscale.io/role: {{ .role }}
{{- end -}}

{{/* Labels of a role's objects and pods. */}}
{{- define "ollyscale-otel.roleLabels" -}}
{{ include "ollyscale-otel.labels" .root }}
ollyscale.io/role: {{ .role }}
app.kubernetes.io/component: {{ .component | default "opentelemetry-collector" }}
{{- end -}}

{{/* image: (dict "root" $ "image" .Values.x.image) */}}
{{- define "ollyscale-otel.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/*
The chart's second config file for a collector: the health_check extension
the probes use (added to service.extensions), the self-metrics address
when the config sets none, and (browser) the protections merged into the
receiver's http protocol, the config's own settings winning. Lists replace on merge, so service.extensions is
the config's own list plus health_check.
(dict "root" $ "values" .Values.gatewayCollector)
*/}}
{{- define "ollyscale-otel.overlay" -}}
{{- $values := .values -}}
{{- $config := $values.config | default dict -}}
{{- $service := $config.service | default dict -}}
{{- $extensions := $service.extensions | default list -}}
{{- $overlay := dict -}}
{{- $overlayService := dict -}}
{{- if $values.healthCheck.enabled -}}
{{- $_ := set $overlay "extensions" (dict "health_check" (dict "endpoint" (printf "0.0.0.0:%v" $values.healthCheck.port))) -}}
{{- if not (has "health_check" $extensions) -}}
{{- $extensions = append $extensions "health_check" -}}
{{- end -}}
{{- $_ := set $overlayService "extensions" $extensions -}}
{{- end -}}
{{- $telemetry := $service.telemetry | default dict -}}
{{- if not (hasKey $telemetry "metrics") -}}
{{- $_ := set $overlayService "telemetry" (dict "metrics" (dict "address" (printf "0.0.0.0:%v" $values.metricsPort))) -}}
{{- end -}}
{{- if $overlayService -}}
{{- $_ := set $overlay "service" $overlayService -}}
{{- end -}}
{{- $protections := $values.protections | default dict -}}
{{- if $protections.enabled -}}
{{- $receivers := $config.receivers | default dict -}}
{{- $receiver := index $receivers $protections.receiver | default dict -}}
{{- $protocols := $receiver.protocols | default dict -}}
{{- if hasKey $protocols "http" -}}
{{- $http := merge (deepCopy ($protocols.http | default dict)) (deepCopy $protections.http) -}}
{{- $_ := set $overlay "receivers" (dict $protections.receiver (dict "protocols" (dict "http" $http))) -}}
{{- end -}}
{{- end -}}
{{- toYaml $overlay -}}
{{- end -}}

{{/*
A collector's pod template.
(dict "root" $ "role" "gateway" "binary" "gateway-collector" "values" .Values.gatewayCollector)
*/}}
{{- define "ollyscale-otel.collectorPod" -}}
{{- $root := .root -}}
{{- $values := .values -}}
metadata:
  labels:
    {{- include "ollyscale-otel.roleLabels" . | nindent 4 }}
  annotations:
    checksum/config: {{ printf "%s\n---\n%s" (toYaml $values.config) (include "ollyscale-otel.overlay" .) | sha256sum }}
    {{- with $root.Values.commonAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ .binary }}
  automountServiceAccountToken: {{ include "ollyscale-otel.usesKubeApi" $values | trim | eq "true" }}
  terminationGracePeriodSeconds: {{ add $values.shutdownTimeoutSeconds 10 }}
  {{- with $values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    fsGroup: 10001
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: {{ .binary }}
      image: {{ include "ollyscale-otel.image" (dict "root" $root "image" $values.image) }}
      imagePullPolicy: {{ $values.image.pullPolicy }}
      args:
        - --config=/etc/ollyscale-otel/collector.yaml
        - --config=/etc/ollyscale-otel/chart-overlay.yaml
        - --shutdown-timeout={{ $values.shutdownTimeoutSeconds }}s
      env:
        - name: KUBE_NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        {{- with $values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        {{- if ne .role "browser" }}
        - name: otlp-grpc
          containerPort: 4317
          protocol: TCP
        {{- end }}
        - name: otlp-http
          containerPort: 4318
          protocol: TCP
        - name: metrics
          containerPort: {{ $values.metricsPort }}
          protocol: TCP
        {{- if $values.healthCheck.enabled }}
        - name: health
          containerPort: {{ $values.healthCheck.port }}
          protocol: TCP
        {{- end }}
      {{- if $values.healthCheck.enabled }}
      livenessProbe:
        httpGet:
          path: /
          port: health
        initialDelaySeconds: 5
        periodSeconds: 10
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /
          port: health
        periodSeconds: 5
        failureThreshold: 2
      {{- else }}
      readinessProbe:
        tcpSocket:
          port: otlp-http
        periodSeconds: 5
      {{- end }}
      {{- with $values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        runAsNonRoot: true
        capabilities:
          drop: [ALL]
      volumeMounts:
        - name: config
          mountPath: /etc/ollyscale-otel
          readOnly: true
        # file_storage queues and the opamp state_directory, if configured there.
        - name: state
          mountPath: /var/lib/otelcol
  volumes:
    - name: config
      configMap:
        name: {{ .binary }}
    - name: state
      emptyDir: {}
  {{- with $values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* "true" when a collector config uses the loadbalancing k8s resolver. */}}
{{- define "ollyscale-otel.usesKubeApi" -}}
{{- $uses := false -}}
{{- range $id, $exporter := (.config.exporters | default dict) -}}
{{- if and (kindIs "map" $exporter) (kindIs "map" ($exporter.resolver | default dict)) -}}
{{- if hasKey ($exporter.resolver | default dict) "k8s" -}}
{{- $uses = true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $uses -}}
{{- end -}}

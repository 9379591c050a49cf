{{/* The listener's pod template, shared by the StatefulSet (shared pool) and the dedicated
     Deployments. Call with (dict "root" $ "dedicated" "" "resources" $res "labels" $extra). */}}
{{- define "eventpipeline.listenerPod" -}}
{{- $root := .root -}}
{{- $l := $root.Values.listener -}}
metadata:
  labels:
    {{- include "eventpipeline.labels" $root | nindent 4 }}
    app.kubernetes.io/component: listener
    {{- with .labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $l.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $l.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "eventpipeline.listenerServiceAccount" $root }}
  automountServiceAccountToken: true
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $l.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  # In-flight triggers finish and their offsets are committed before the pod goes.
  terminationGracePeriodSeconds: 60
  containers:
    - name: listener
      image: {{ include "eventpipeline.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args:
        - listen
        - --metrics-port
        - {{ $l.metricsPort | quote }}
        {{- if .dedicated }}
        - --replica-index
        - "0"
        - --dedicated
        - {{ .dedicated }}
        {{- else }}
        - --replicas
        - {{ $l.replicas | quote }}
        - --replica-index
        - $(EVENTPIPELINE_LISTENER_ORDINAL)
        {{- end }}
      env:
        {{- include "eventpipeline.podEnv" $root | nindent 8 }}
        {{- if not .dedicated }}
        # Consistent hashing of pipelines over the shared replicas: how many there are and
        # which one this is (StatefulSet pods carry their ordinal as a label; it is passed
        # as --replica-index above).
        - name: EVENTPIPELINE_LISTENER_REPLICAS
          value: {{ $l.replicas | quote }}
        - name: EVENTPIPELINE_LISTENER_ORDINAL
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        {{- end }}
        {{- with $l.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ $l.metricsPort }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /metrics
          port: metrics
        initialDelaySeconds: 15
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /metrics
          port: metrics
        periodSeconds: 10
        timeoutSeconds: 5
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    {{- include "eventpipeline.tmpVolume" $root | nindent 4 }}
  {{- with $l.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $l.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $l.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

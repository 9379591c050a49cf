{{/* Chart name, truncated to fit the 63-character name limit with suffixes. */}}
{{- define "eventpipeline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name: the prefix of every object. */}}
{{- define "eventpipeline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "eventpipeline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "eventpipeline.labels" -}}
helm.sh/chart: {{ include "eventpipeline.chart" . }}
app.kubernetes.io/name: {{ include "eventpipeline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eventpipeline
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "controller"). */}}
{{- define "eventpipeline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eventpipeline.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "eventpipeline.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "eventpipeline.controllerServiceAccount" -}}
{{- if .Values.controller.serviceAccount.create -}}
{{- default (printf "%s-controller" (include "eventpipeline.fullname" .)) .Values.controller.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.controller.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "eventpipeline.listenerServiceAccount" -}}
{{- if .Values.listener.serviceAccount.create -}}
{{- default (printf "%s-listener" (include "eventpipeline.fullname" .)) .Values.listener.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.listener.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "eventpipeline.peeringName" -}}
{{- default (include "eventpipeline.fullname" .) .Values.controller.peering.name -}}
{{- end -}}

{{/* Name of a dedicated listener: readable prefix plus a hash of namespace/name, so that
     long or similar pipeline names never collide or overflow 63 characters. */}}
{{- define "eventpipeline.dedicatedName" -}}
{{- $parts := splitList "/" .pipeline -}}
{{- $readable := printf "%s-%s" (index $parts 0) (index $parts 1) | trunc 20 | trimSuffix "-" | trimSuffix "." | replace "." "-" -}}
{{- printf "%s-dl-%s-%s" (include "eventpipeline.fullname" .root) $readable (sha256sum .pipeline | trunc 8) -}}
{{- end -}}

{{/* The environment both workloads share. */}}
{{- define "eventpipeline.podEnv" -}}
- name: POD_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: EVENTPIPELINE_ALLOW_NAMESPACED_REFERENCES
  value: {{ .Values.tenancy.allowNamespacedReferences | quote }}
# The controller hands each pipeline's listener credential to the listener here.
- name: EVENTPIPELINE_LISTENER_NAMESPACE
  value: {{ .Release.Namespace | quote }}
{{- end -}}

{{/* The writable scratch directory of a read-only root filesystem. */}}
{{- define "eventpipeline.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{/* Egress to the cluster DNS, added whenever egress is restricted. */}}
{{- define "eventpipeline.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end -}}

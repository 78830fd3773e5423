{{- define "kafka-twilio.name" -}}kafka-twilio{{- end -}}

{{- define "kafka-twilio.selectorLabels" -}}
app.kubernetes.io/name: kafka-twilio
app.kubernetes.io/component: consumer
{{- end -}}

{{- define "kafka-twilio.labels" -}}
{{ include "kafka-twilio.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: kafka-twilio
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Fail early on values that would deploy something broken. */}}
{{- define "kafka-twilio.validate" -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (add (int .Values.consumer.drainGraceSeconds) 9 | int) -}}
{{- fail "terminationGracePeriodSeconds must exceed consumer.drainGraceSeconds by at least 10 s (commit and dead-letter flush)" -}}
{{- end -}}
{{- if and .Values.keda.enabled (gt (int .Values.keda.maxReplicas) (int .Values.keda.topicPartitions)) -}}
{{- fail "keda.maxReplicas exceeds keda.topicPartitions: replicas beyond the partition count sit idle" -}}
{{- end -}}
{{- if and (hasPrefix "SASL" .Values.kafka.securityProtocol) (not .Values.kafka.existingSecret) -}}
{{- fail "kafka.securityProtocol is SASL_*: set kafka.existingSecret to the Secret holding KAFKA_CLIENT_SASL_USERNAME and KAFKA_CLIENT_SASL_PASSWORD" -}}
{{- end -}}
{{- end -}}

{{- define "kafka-twilio.webhookSelectorLabels" -}}
app.kubernetes.io/name: kafka-twilio
app.kubernetes.io/component: webhooks
{{- end -}}

{{- define "kafka-twilio.webhookLabels" -}}
{{ include "kafka-twilio.webhookSelectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: kafka-twilio
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

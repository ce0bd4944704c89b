"""Every name telemetry emits: spans, metrics, attributes and log dimensions.

docs/operate.md lists them; the workbook (infra/bicep/workbook.json) and the suggested alerts query
them, and a test checks that every chart queries only names defined here.
"""

from __future__ import annotations

LOGGER_NAME = "handoff"
SPAN_INCOMING_CALL = "handoff.incoming_call"
SPAN_CALLBACK = "handoff.callback"

METRIC_CALLS = "handoff.calls"
METRIC_DECODE_FAILURES = "handoff.decode_failures"
METRIC_FALLBACK_ROUTES = "handoff.fallback_routes"
METRIC_TRANSIENT_RETRIES = "handoff.transient_retries"
METRIC_STALE_EVENTS = "handoff.stale_events"
METRIC_DUPLICATE_EVENTS = "handoff.duplicate_events"
METRIC_TIME_TO_ACTION = "handoff.time_to_action"
METRIC_CALLBACKS = "handoff.callbacks"
METRIC_CALLBACK_REJECTIONS = "handoff.callback_rejections"  # by reason: keys_unavailable, unauthorized, ...
METRIC_STORE_RECORDS_LOST = "handoff.store_records_lost"  # call records not written (store down): alert
METRIC_STORE_WRITE_TIME = "handoff.store_write_time"  # queued → written, ms

# Span attributes and log dimensions share these names: one query language for both tables.
EVENT_ID = "handoff.event_id"
CORRELATION_ID = "handoff.correlation_id"
SERVER_CALL_ID = "handoff.server_call_id"
CALL_CONNECTION_ID = "handoff.call_connection_id"
CALLED = "handoff.called"
WORKSTREAM = "handoff.workstream"
QUEUE = "handoff.queue"
ACTION = "handoff.action"
RULE = "handoff.rule"
UUI_FORM = "handoff.uui_form"
UUI_LENGTH = "handoff.uui_length"
DECODE = "handoff.decode"  # ok | error | none
DECODE_ERROR = "handoff.decode_error"  # the UUIError kind
CONTEXT_COUNT = "handoff.context_count"
WARNING_COUNT = "handoff.warning_count"
ERROR_COUNT = "handoff.error_count"
ISSUES = "handoff.issues"  # the error codes, comma-separated (type_mismatch, uui_non_hex_characters...)
OUTCOME = "handoff.outcome"
RETRYABLE = "handoff.retryable"
ELAPSED_MS = "handoff.elapsed_ms"  # Call Automation request time, every attempt included
TIME_TO_ANSWER_MS = "handoff.time_to_answer_ms"  # eventTime → Call Automation's answer
DELIVERY_DELAY_MS = "handoff.delivery_delay_ms"  # eventTime → this process starts on the event
CA_RETRIES = "handoff.ca_retries"
CA_OPERATION = "handoff.ca_operation"
CA_ATTEMPT = "handoff.ca_attempt"
CALLBACK_TYPE = "handoff.callback_type"
CALLBACK_RESULT = "handoff.callback_result"
RESULT_CODE = "handoff.result_code"  # resultInformation code/subCode of a callback
TRANSFER_ATTEMPT = "handoff.transfer_attempt"  # primary | fallback

"""The app's decisions → Call Automation. The only module that talks to Azure Communication Services.

Facts (handbook acs.md, "Call Automation SDK 1.6.0" and "Event Grid delivery"):
- ``answer_call`` takes the queue's callback URL (https in Azure) and an ``operation_context`` that
  ACS echoes in every callback: it carries the queue, workstream, correlation id and the context as received
  (shared/core/decision.py's ``OperationContext``).
- ``redirect_call`` cannot carry custom headers; ``reject_call`` takes none/busy/forbidden.
- azure-core's RetryPolicy retries 408/429/500/502/503/504 and connection errors, honours
  ``Retry-After``, re-signs each attempt and keeps the ``Repeatability-Request-ID`` so the service
  executes a retried request once. Its ``timeout`` bounds the whole operation: that is our deadline.
- A stale ``incomingCallContext`` (the call stopped ringing after 30 s) is HTTP 400 with
  ``IDX23010``: the event is over; retrying cannot help.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from azure.communication.callautomation import CallAutomationClient, PhoneNumberIdentifier
from azure.communication.callautomation._shared.models import CommunicationIdentifier, identifier_from_raw_id
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline.policies import RetryPolicy

from shared.adapters import transport
from shared.adapters.settings import Settings
from shared.core.acs import CONFLICT_STATUS, PHONE_RAW_ID_PREFIX, STALE_CONTEXT_MARKER
from shared.core.decision import Action, ActionResult, Decision, OperationContext, Outcome, refusal
from shared.core.events import IncomingCall
from shared.core.sealing import Sealer
from shared.core.transfer import TransferHeaders

log = logging.getLogger("handoff.calls")

#: Mid-call actions a 409 "another action in progress" may be retried on (acs.md; see acs.CONFLICT_STATUS).
_MID_CALL_ACTION = re.compile(r"/callConnections/[^/:?]+:(transferToParticipant|terminate)")


def to_identifier(target: str) -> CommunicationIdentifier:
    """E.164 numbers, and every raw-id kind (8:acs:, 8:orgid:, 28:orgid:, ...) via the SDK's parser."""
    if target.startswith(("+", PHONE_RAW_ID_PREFIX + "+")):
        # Built directly, as the SDK's own samples do: the raw-id parser adds isAnonymous=false.
        return PhoneNumberIdentifier(target.removeprefix(PHONE_RAW_ID_PREFIX))
    return identifier_from_raw_id(target)


def create_client(settings: Settings, per_retry_policies: Sequence[Any] = ()) -> CallAutomationClient:
    """One client per process. HMAC with ACS_ACCESS_KEY locally; managed identity in Azure.

    ``per_retry_policies`` run on every attempt (the composition root hands in telemetry's)."""
    credential: Any
    if settings.acs_access_key:
        credential = AzureKeyCredential(settings.acs_access_key)
    else:
        # Imported here: azure.identity costs ~170 ms of import time that key-based runs never need.
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=settings.azure_client_id)
    retry = DeadlineRetryPolicy(
        retry_total=5,
        retry_backoff_factor=0.2,
        retry_backoff_max=2,
        timeout=settings.deadline_seconds,
    )
    return CallAutomationClient(
        settings.acs_endpoint,
        credential,
        retry_policy=retry,
        per_retry_policies=list(per_retry_policies),
        **transport.client_options(
            settings.acs_endpoint,
            # A third of the deadline per attempt leaves room for retries after a stalled response.
            connection_timeout=min(3.0, settings.deadline_seconds / 3),
            read_timeout=max(1.0, settings.deadline_seconds / 3),
        ),
    )


class DeadlineExceeded(Exception):
    """A retry would end after the deadline: give up now, while the call still rings."""


class DeadlineRetryPolicy(RetryPolicy):  # type: ignore[type-arg]
    """azure-core's RetryPolicy with two changes that serve a ringing call.

    - POST is retried like any other method: every Call Automation request carries a
      ``Repeatability-Request-ID`` that the retry keeps, so the service executes it at most once
      (the stock policy retries POST only on 500/503/504, not on 502, 429 without Retry-After or
      timeouts).
    - No wait, whether ``Retry-After`` or backoff, may end past the deadline (``timeout``): the
      stock policy sleeps a 60 s Retry-After even with a 10 s timeout; a call rings for 30 s.
    - A 409 on a transfer or a hang-up is retried too (another action on the call was in progress).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._method_whitelist = frozenset([*self._method_whitelist, "POST"])

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        settings = super().configure_retries(options)
        settings["deadline"] = time.monotonic() + settings["timeout"]
        return settings

    def is_retry(self, settings: dict[str, Any], response: Any) -> bool:
        if super().is_retry(settings, response):
            return True
        # 409 on a transfer or hang-up: another action on the call is in progress (409/8519
        # "Conflict"); it clears, so try again inside the deadline. On the ringing call (answer,
        # redirect, reject) a 409 means someone else already acted on it: never retried.
        return bool(
            settings["total"]
            and response.http_response.status_code == CONFLICT_STATUS
            and _MID_CALL_ACTION.search(response.http_request.url)
        )

    def sleep(self, settings: dict[str, Any], transport: Any, response: Any = None) -> None:
        wait = self.get_retry_after(response) if response is not None else None
        if wait is None:
            wait = self.get_backoff_time(settings)
        if time.monotonic() + wait >= settings["deadline"]:
            raise DeadlineExceeded(
                f"the next attempt would start {wait:.1f}s from now, past the {settings['timeout']:g}s deadline"
            )
        super().sleep(settings, transport, response)


def error_sub_code(exc: HttpResponseError) -> int | None:
    """The sub-code of a Call Automation error body, wherever it is put: ``subCode``, a numeric
    ``code``, ``innererror.code`` or a detail's ``code`` (where ACS puts it for a refused action is not
    documented: acs.md)."""
    try:
        body = json.loads(exc.response.text()) if exc.response is not None else None
    except (ValueError, TypeError, AttributeError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    inner = error.get("innererror")
    details = error.get("details")
    candidates = [error.get("subCode"), error.get("code"), inner.get("code") if isinstance(inner, dict) else None]
    candidates += [d.get("code") for d in details if isinstance(d, dict)] if isinstance(details, list) else []
    for candidate in candidates:
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            return candidate
        if isinstance(candidate, str) and candidate.isascii() and candidate.isdigit():
            return int(candidate)
    return None


def classify(exc: Exception, operation: str) -> tuple[Outcome, bool, str]:
    """(outcome, retryable, detail) for an error from Call Automation on ``operation``."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, HttpResponseError):
        code = exc.status_code
        sub_code = error_sub_code(exc)
        outcome, _ = refusal(operation, code, sub_code, stale=STALE_CONTEXT_MARKER in str(exc))
        shape = f"HTTP {code}" + (f"/{sub_code}" if sub_code is not None else "")
        if outcome == Outcome.STALE:
            return outcome, False, "the incoming call context expired (IDX23010): the call stopped ringing"
        if outcome == Outcome.ALREADY_HANDLED:
            return outcome, False, f"Call Automation says the call was already handled ({shape}): {message}"
        if outcome == Outcome.TRANSIENT:
            return outcome, True, f"{shape} after retries: {message}"
        return outcome, False, f"{shape}: {message}"
    if isinstance(exc, ServiceRequestError | ServiceResponseError | DeadlineExceeded):
        return Outcome.TRANSIENT, True, f"{type(exc).__name__}: {message}"
    return Outcome.PERMANENT, False, f"{type(exc).__name__}: {message}"


def repeatable_id(*parts: str) -> str:
    """A Repeatability-Request-ID derived from what the request does to which call, in the form the
    service asks for (a version-4 UUID), so that every instance deciding the same step sends the same id."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


class CallActions:
    """Carries out the app's decisions on calls. Holds the one Call Automation client of the process."""

    def __init__(self, settings: Settings, client: CallAutomationClient, sealer: Sealer | None = None):
        self.settings = settings
        self.client = client
        #: Signs (and seals the sensitive part of) every operationContext this app sends.
        self.sealer = sealer

    def _attempt(
        self, action: str, connection_id: str | None, request: Callable[[], str | None], operation: str | None = None
    ) -> ActionResult:
        """Run one Call Automation request; every failure becomes a classified result, never an exception.
        ``operation`` is the request Call Automation received, when it is not ``action`` itself."""
        start = time.perf_counter()
        try:
            created = request()
        except Exception as exc:  # every failure gets a defined outcome; nothing escapes to the host
            outcome, retryable, detail = classify(exc, operation or action)
            elapsed = (time.perf_counter() - start) * 1000
            return ActionResult(outcome, action, detail, connection_id, elapsed, retryable)
        return ActionResult(Outcome.DONE, action, "", created or connection_id, (time.perf_counter() - start) * 1000)

    def execute(self, call: IncomingCall, decision: Decision) -> ActionResult:
        """Carry out the Decision on the ringing call: answer, redirect or reject."""
        context = call.incoming_call_context

        def request() -> str | None:
            if decision.action in (Action.ANSWER, Action.TRANSFER):
                # A transfer queue is answered by this app (its own callback URL); the transfer with
                # context follows on CallConnected, since only a connected call can be transferred.
                callback = self.settings.callback_url if decision.action == Action.TRANSFER else decision.callback_url
                assert callback is not None
                op = OperationContext.for_call(call.correlation_id, decision, call.leg)
                operation_context = op.to_json(self.sealer)
                props = self.client.answer_call(context, callback, operation_context=operation_context)
                return str(props.call_connection_id) if props.call_connection_id else None
            if decision.action == Action.REDIRECT:
                assert decision.target is not None
                self.client.redirect_call(context, to_identifier(decision.target))
            elif decision.action == Action.REJECT:
                self.client.reject_call(context, call_reject_reason=decision.reject_reason or "none")
            else:  # pragma: no cover - the configuration only allows the four actions
                raise ValueError(f"unknown action {decision.action!r}")
            return None

        # A transfer queue's ringing call is answered: Call Automation's refusal is an answer's (an
        # "already handled" shape means another instance answered it), not a mid-call transfer's.
        operation = "answer" if decision.action == Action.TRANSFER else str(decision.action)
        return self._attempt(decision.action, None, request, operation)

    def transfer(
        self, call_connection_id: str, target: str, headers: TransferHeaders, operation_context: OperationContext
    ) -> ActionResult:
        """Transfer a connected call to the queue's target with the context as headers."""

        # The same transfer decided twice (a repeated CallConnected on two instances while the store
        # that shares their state was down) is the same request, byte for byte, under the same
        # Repeatability-Request-ID: Call Automation executes it once (acs.md, "Requests carry
        # Repeatability-Request-ID"; the id is derived, not random, for exactly this).
        attempt = str(operation_context.attempt or "")
        request_id = repeatable_id("transfer", call_connection_id, attempt, target)

        def request() -> None:
            self.client.get_call_connection(call_connection_id).transfer_call_to_participant(
                to_identifier(target),
                operation_context=operation_context.to_json(self.sealer, deterministic=True),
                operation_callback_url=self.settings.callback_url,
                sip_headers=headers.sip_headers,
                voip_headers=headers.voip_headers,
                headers={"Repeatability-Request-ID": request_id},
            )

        return self._attempt("transfer", call_connection_id, request)

    def hang_up(self, call_connection_id: str) -> ActionResult:
        """End the call for everyone: nobody is left to take it."""
        request_id = repeatable_id("terminate", call_connection_id)  # two instances hanging up: once
        return self._attempt(
            "hangup",
            call_connection_id,
            lambda: self.client.get_call_connection(call_connection_id).hang_up(
                is_for_everyone=True, headers={"Repeatability-Request-ID": request_id}
            ),
        )

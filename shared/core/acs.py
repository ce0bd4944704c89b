"""Azure Communication Services and Event Grid facts, in one place, each with its source.

Every limit, character set, prefix and event name the app depends on is defined here once; the
codec, the event reader, the configuration and the transfer header builder import them.
Sources: the handbook's acs.md / uui.md (which quote Microsoft Docs, the REST specs and the
azure-communication-callautomation 1.6.0 SDK), and the samples in tests/data/.
"""

from __future__ import annotations

import re
import string

# ---- Event Grid ------------------------------------------------------------------------------

#: ``eventType`` (Event Grid schema) / ``type`` (CloudEvents) of the event this app acts on.
#: Checked against azure-eventgrid's ``SystemEventNames`` in tests.
INCOMING_CALL_EVENT = "Microsoft.Communication.IncomingCall"
#: The webhook handshake (HTTP endpoints only); the Functions host answers it for its trigger.
SUBSCRIPTION_VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
#: Mid-call callbacks are CloudEvents whose ``type`` is this prefix + the event name.
CALLBACK_EVENT_PREFIX = "Microsoft.Communication."

#: A call rings for 30 s; answering after that fails with IDX23010 (acs.md, "Event Grid delivery").
RING_SECONDS = 30.0
#: Event Grid's first retry comes ~10 s after a failed delivery, so a redelivery can still reach a
#: ringing call only if the event is younger than this when we give up.
RETRY_CAN_HELP_BEFORE_AGE_S = 15.0
#: What ACS answers for a stale incomingCallContext: HTTP 400 whose message contains this marker
#: ("IDX23010: Lifetime validation of the signed http request failed").
STALE_CONTEXT_MARKER = "IDX23010"

# ---- What Call Automation answers when it refuses (acs.md, "After the call leaves the app") --------

#: Operations on the ringing call (its incomingCallContext); the others act on a call connection.
RINGING_CALL_OPERATIONS = frozenset({"answer", "redirect", "reject"})
#: A second answer, redirect or reject of a call someone already acted on: ACS's answer is not
#: documented (UNVERIFIED against the live service). Candidate (status, sub-code) shapes from SDK
#: sources and docs: 400/8523 invalid argument, 404/8522 not found, 409/8519 conflict, 400/8501 call
#: not established, 400/8528 call terminated. Any 409 on the ringing call means the same: conflict.
ALREADY_HANDLED_SHAPES = frozenset({(400, 8523), (404, 8522), (409, 8519), (400, 8501), (400, 8528)})
#: 409/8519 on a mid-call action (transfer, hang-up): another action on the call is in progress.
#: It clears, so the request is retried inside the deadline like a 429 or a 5xx.
CONFLICT_STATUS = 409

# ---- Communication identifiers (raw id format) -----------------------------------------------

#: ``rawId`` prefixes a redirect/transfer target may use: ``4:`` phone number, ``8:acs:`` ACS
#: user, ``8:spool:`` ACS spool user, ``8:orgid:``/``8:dod:``/``8:gcch:`` Teams user by cloud,
#: ``8:teamsvisitor:``, ``28:`` Teams app (call queue, auto attendant). ``+`` starts an E.164
#: number (CommunicationIdentifier raw id format, azure-communication-common).
PHONE_RAW_ID_PREFIX = "4:"
TARGET_PREFIXES = (
    "+",
    PHONE_RAW_ID_PREFIX,
    "8:acs:",
    "8:spool:",
    "8:orgid:",
    "8:dod:",
    "8:gcch:",
    "8:teamsvisitor:",
    "28:",
)

# ---- User-to-User over direct routing (uui.md, "Facts behind the rules") -----------------------

#: A UUI value is at most 256 characters ...
UUI_MAX = 256
#: ... from these characters.
UUI_CHARSET: frozenset[str] = frozenset(string.ascii_letters + string.digits + "=;.!%*_+~-")
#: The header name this app sends the UUI under on a transfer (what the SDKs send).
UUI_HEADER = "User-To-User"

# ---- Custom SIP and VoIP headers on a transfer (acs.md, "Limits") ------------------------------

#: Up to 5 custom SIP headers besides the one User-To-User.
MAX_CUSTOM_SIP_HEADERS = 5
#: A header key is at most 64 characters, the prefix included ...
HEADER_KEY_MAX = 64
#: ... from ``[A-Za-z0-9]`` and ``. ! % * _ + ~ -``;
HEADER_KEY_CHARSET: frozenset[str] = frozenset(string.ascii_letters + string.digits + ".!%*_+~-")
#: a SIP header value at most 256 characters, from the key set plus ``=`` and ``;``.
SIP_HEADER_VALUE_MAX = 256
SIP_HEADER_VALUE_CHARSET: frozenset[str] = HEADER_KEY_CHARSET | {"=", ";"}
#: The prefix of custom SIP headers this app sends (legacy spelling, still accepted by ACS).
CUSTOM_SIP_PREFIX = "X-MS-Custom-"
#: Custom headers arrive as ``X-MS-Custom-<name>`` (legacy) or ``X-<name>`` (current); longest
#: first, so ``X-MS-Custom-Foo`` is ``Foo``, not ``MS-Custom-Foo`` (uui.md).
CUSTOM_HEADER_PREFIXES = ("x-ms-custom-", "x-")
#: Other ``X-MS-*`` names are reserved by Microsoft and never context.
RESERVED_HEADER_PREFIX = "x-ms-"
#: VoIP headers (ACS and Teams targets): up to 1000, key ≤ 64, value ≤ 1024.
MAX_VOIP_HEADERS = 1000
VOIP_HEADER_VALUE_MAX = 1024


def charset_pattern(chars: frozenset[str]) -> str:
    """A regular expression character class of exactly ``chars`` (for ``fullmatch`` checks)."""
    return "[" + re.escape("".join(sorted(chars))) + "]"

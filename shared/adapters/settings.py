"""Every setting the app reads, in one place, and the routing file they name.

The Bicep templates set exactly the settings marked ``in_azure`` (a test in ``tests/`` checks
that the two lists agree), the README documents them all, and :func:`load` reads them once at
start-up so a missing or malformed one fails loudly, naming the setting, before any call arrives.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.core.routing_table import ConfigError, Routing

#: ACS publishes its callback signing keys here (handbook acs.md, "Mid-call callbacks").
DEFAULT_OPENID_CONFIG_URL = (
    "https://acscallautomation.communication.azure.com/calling/.well-known/acsopenidconfiguration"
)


@dataclass(frozen=True)
class Setting:
    name: str
    description: str
    required: bool = False
    default: str | None = None
    #: True when infra/bicep must set it on the deployed function app.
    in_azure: bool = True


SETTINGS: tuple[Setting, ...] = (
    Setting("HANDOFF_CONFIG", "Path of the routing YAML, relative to the app root.", default="routing.yaml"),
    Setting("ACS_ENDPOINT", "Endpoint of the Azure Communication Services resource.", required=True),
    Setting(
        "ACS_ACCESS_KEY",
        "ACS access key (HMAC). Local development only; in Azure the managed identity is used.",
        in_azure=False,
    ),
    Setting(
        "AZURE_CLIENT_ID",
        "Client id of the function's user-assigned managed identity (Call Automation with Entra ID).",
    ),
    Setting(
        "HANDOFF_CALLBACK_URL",
        "Public https URL of this app's Call Automation callback endpoint (/api/callbacks).",
        required=True,
    ),
    Setting(
        "ACS_RESOURCE_ID",
        "Immutable resource id (GUID) of the ACS resource: the audience of callback JWTs.",
    ),
    Setting(
        "HANDOFF_OPENID_CONFIG_URL",
        "OpenID configuration (or JWKS) URL used to verify callback JWTs.",
        default=DEFAULT_OPENID_CONFIG_URL,
        in_azure=False,
    ),
    Setting(
        "HANDOFF_DEADLINE_SECONDS",
        "Time budget for one Call Automation action including retries (a call rings 30 s).",
        default="10",
    ),
    Setting(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "Application Insights connection string; telemetry is off when unset.",
    ),
    Setting(
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "Entra ID authentication for the exporter (ClientId=<id>;Authorization=AAD).",
    ),
    Setting(
        "HANDOFF_CONTEXT_KEY",
        "Secret key (at least 32 characters) that signs the operationContext this app sends (HMAC-SHA256), so "
        "only calls it set up are steered through its callbacks, and seals the sensitive context variables in it "
        "(AES-GCM). Several keys separated by commas while rotating: the first signs, any verifies. Required when "
        "a queue transfers.",
    ),
    Setting(
        "HANDOFF_REDACTION_KEY",
        "Secret key (at least 16 characters) for the short keyed hashes (HMAC-SHA256) that replace "
        "sensitive context values in logs and telemetry, so operators can match calls; unset: masked as ***.",
    ),
    Setting(
        "HANDOFF_STORE",
        "Where the call records are kept (Table Storage): the table endpoint "
        "(https://<account>.table.core.windows.net), used with the managed identity, in Azure; a connection "
        "string locally (Azurite). Unset: no records, and lookups answer 503.",
    ),
    Setting("HANDOFF_STORE_TABLE", "Table of the call records.", default="calls"),
    Setting(
        "HANDOFF_CONTEXT_TTL_HOURS",
        "How long a call's record (its context) is kept before the sweep deletes it, in hours.",
        default="24",
    ),
    Setting(
        "HANDOFF_TRANSFER_TIMEOUT_SECONDS",
        "How long a call answered for a transfer may wait for it: past this the sweep (timer_trigger, every "
        "minute) transfers it to its workstream's fallback queue or hangs up, so nobody is left on an answered call.",
        default="15",
    ),
    Setting(
        "HANDOFF_REVEAL_KEY",
        "Secret (at least 32 characters) a lookup of /api/calls/{correlationId} presents in the "
        "X-Handoff-Reveal-Key header to get sensitive context values unmasked; unset: never revealed. Give it "
        "only to the agent desktop's back end.",
        in_azure=False,
    ),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    config_path: str
    acs_endpoint: str
    acs_access_key: str | None
    azure_client_id: str | None
    callback_url: str
    acs_resource_id: str | None
    openid_config_url: str
    deadline_seconds: float
    appinsights_connection_string: str | None
    appinsights_authentication_string: str | None = None
    redaction_key: str | None = field(default=None, repr=False)  # a secret: kept out of reprs
    context_keys: tuple[str, ...] = field(default=(), repr=False)  # secrets: kept out of reprs
    #: The call records: a table endpoint (managed identity) or a connection string; None: off.
    store: str | None = field(default=None, repr=False)  # a connection string holds a key
    store_table: str = "calls"
    context_ttl_hours: float = 24.0
    transfer_timeout_seconds: float = 15.0
    reveal_key: str | None = field(default=None, repr=False)  # a secret: kept out of reprs


#: https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model#table-names
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
#: Shorter keys make the keyed hashes of sensitive values guessable.
REDACTION_KEY_MIN = 16
#: A context key is an HMAC and AES-256 key source: 32 characters of `openssl rand -hex 32` and up.
CONTEXT_KEY_MIN = 32


def _get(env: Mapping[str, str], name: str) -> str | None:
    setting = BY_NAME[name]
    value = env.get(name, "").strip() or setting.default
    if setting.required and not value:
        raise SettingsError(f"setting {name} is required: {setting.description}")
    return value


def _url(name: str, value: str, *, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise SettingsError(f"setting {name} must be an absolute {'/'.join(schemes)} URL, got {value!r}")
    return value


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting. Raises SettingsError naming the first bad one."""
    env = os.environ if env is None else env
    endpoint = _url("ACS_ENDPOINT", _get(env, "ACS_ENDPOINT") or "", schemes=("https", "http"))
    callback = _url("HANDOFF_CALLBACK_URL", _get(env, "HANDOFF_CALLBACK_URL") or "", schemes=("https", "http"))
    access_key = _get(env, "ACS_ACCESS_KEY")
    deadline_text = _get(env, "HANDOFF_DEADLINE_SECONDS") or "10"
    try:
        deadline = float(deadline_text)
    except ValueError:
        raise SettingsError(f"setting HANDOFF_DEADLINE_SECONDS must be a number, got {deadline_text!r}") from None
    if not 0 < deadline <= 25:
        # A call rings 30 s; the deadline must leave room to act before it stops ringing.
        raise SettingsError(f"setting HANDOFF_DEADLINE_SECONDS must be in (0, 25], got {deadline}")
    connection_string = _get(env, "APPLICATIONINSIGHTS_CONNECTION_STRING")
    if connection_string and "instrumentationkey=" not in connection_string.lower():
        raise SettingsError(
            "setting APPLICATIONINSIGHTS_CONNECTION_STRING must be an Application Insights connection string "
            "(InstrumentationKey=...;IngestionEndpoint=...)"
        )
    redaction_key = _get(env, "HANDOFF_REDACTION_KEY")
    if redaction_key is not None and len(redaction_key) < REDACTION_KEY_MIN:
        # The key itself is never echoed.
        raise SettingsError(f"setting HANDOFF_REDACTION_KEY must be at least {REDACTION_KEY_MIN} characters long")
    context_keys = tuple(k.strip() for k in (_get(env, "HANDOFF_CONTEXT_KEY") or "").split(",") if k.strip())
    if any(len(k) < CONTEXT_KEY_MIN for k in context_keys):
        # The key itself is never echoed.
        raise SettingsError(
            f"setting HANDOFF_CONTEXT_KEY: every key must be at least {CONTEXT_KEY_MIN} characters long"
        )
    store = _get(env, "HANDOFF_STORE")
    if store and not (store.startswith(("https://", "http://")) or "=" in store):
        # Never echoed: a connection string carries the account key.
        raise SettingsError(
            "setting HANDOFF_STORE must be a table endpoint (https://<account>.table.core.windows.net) or a "
            "storage connection string"
        )
    table_name = _get(env, "HANDOFF_STORE_TABLE") or "calls"
    if not _TABLE_NAME.fullmatch(table_name):
        # Table Storage's rule for table names.
        raise SettingsError(
            f"setting HANDOFF_STORE_TABLE must be 3-63 letters and digits, starting with a letter; got {table_name!r}"
        )
    reveal_key = _get(env, "HANDOFF_REVEAL_KEY")
    if reveal_key is not None and len(reveal_key) < CONTEXT_KEY_MIN:
        raise SettingsError(f"setting HANDOFF_REVEAL_KEY must be at least {CONTEXT_KEY_MIN} characters long")
    return Settings(
        config_path=_get(env, "HANDOFF_CONFIG") or "routing.yaml",
        acs_endpoint=endpoint,
        acs_access_key=access_key,
        azure_client_id=_get(env, "AZURE_CLIENT_ID"),
        callback_url=callback,
        acs_resource_id=_get(env, "ACS_RESOURCE_ID"),
        openid_config_url=_get(env, "HANDOFF_OPENID_CONFIG_URL") or DEFAULT_OPENID_CONFIG_URL,
        deadline_seconds=deadline,
        appinsights_connection_string=connection_string,
        appinsights_authentication_string=_get(env, "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"),
        redaction_key=redaction_key,
        context_keys=context_keys,
        store=store,
        store_table=table_name,
        context_ttl_hours=_positive(env, "HANDOFF_CONTEXT_TTL_HOURS", maximum=24 * 365),
        transfer_timeout_seconds=_positive(env, "HANDOFF_TRANSFER_TIMEOUT_SECONDS", maximum=3600),
        reveal_key=reveal_key,
    )


def _positive(env: Mapping[str, str], name: str, maximum: float) -> float:
    text = _get(env, name) or ""
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"setting {name} must be a number, got {text!r}") from None
    if not 0 < value <= maximum:
        raise SettingsError(f"setting {name} must be in (0, {maximum:g}], got {text}")
    return value


#: The routing table ``make package`` validates and compiles into the package beside the file it
#: came from (``routing.yaml`` → ``routing.yaml.prebuilt``), so a cold start imports neither the
#: validator (pydantic) nor the YAML parser before the first call is answered.
PREBUILT_SUFFIX = ".prebuilt"
_PREBUILT_FORMAT = 1


def load_routing(path: str) -> Routing:
    """Read and compile a routing file (start-up and the ``handoff`` command only, never per call).

    A prebuilt table beside it is used only when it was built from exactly these bytes; otherwise
    (none, another version of the file, a table this code cannot read) the file is validated here.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the routing configuration: {exc.strerror}"]) from None
    table = _prebuilt(path, data)
    if table is not None:
        return table
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: the routing configuration is not UTF-8 text"]) from None
    from shared.core.config import parse  # the validator: pydantic and the YAML parser, loaded only here

    return parse(text.replace("\r\n", "\n").replace("\r", "\n"), source=path)


def prebuild_routing(path: str, source: str | None = None) -> bytes:
    """The prebuilt table for the routing file at ``path`` (``make package`` writes it to
    ``path + PREBUILT_SUFFIX`` in the package); ``source`` is the name problems are reported under.
    Raises ConfigError when the file is invalid, so an invalid configuration never reaches a package."""
    import hashlib
    import pickle

    from shared.core.config import parse

    with open(path, "rb") as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{source or path}: the routing configuration is not UTF-8 text"]) from None
    table = parse(text.replace("\r\n", "\n").replace("\r", "\n"), source=source or path)
    record = {"format": _PREBUILT_FORMAT, "sha256": hashlib.sha256(data).hexdigest(), "routing": table}
    return pickle.dumps(record, protocol=5)


def _prebuilt(path: str, data: bytes) -> Routing | None:
    try:
        with open(path + PREBUILT_SUFFIX, "rb") as fh:
            blob = fh.read()
    except OSError:
        return None
    import hashlib
    import pickle  # the package's own file, written by make package: as trusted as its code

    try:
        record = pickle.loads(blob)
    except Exception:  # written by another version of the code: validate the file instead
        return None
    if (
        not isinstance(record, dict)
        or record.get("format") != _PREBUILT_FORMAT
        or record.get("sha256") != hashlib.sha256(data).hexdigest()
        or not isinstance(record.get("routing"), Routing)
    ):
        return None
    table: Routing = record["routing"]
    return dataclasses.replace(table, source=path)


def check_for_routing(cfg: Settings, routing: Routing) -> None:
    """Settings a routing file needs. A transfer queue's call is answered by this app and transferred on
    its CallConnected callback: without ACS_RESOURCE_ID no callback verifies (the caller would sit in
    silence on an answered call), and without HANDOFF_CONTEXT_KEY no operation context does."""
    transferring = sorted(name for name, queue in routing.queues.items() if queue.action == "transfer")
    if not transferring:
        return
    queues = ", ".join(transferring)
    if not cfg.acs_resource_id:
        raise SettingsError(
            f"setting ACS_RESOURCE_ID is required: queue {queues} transfers calls, which needs this app's "
            "CallConnected callback, and callback tokens are checked against the ACS resource's immutable id"
        )
    if not cfg.context_keys:
        raise SettingsError(
            f"setting HANDOFF_CONTEXT_KEY is required: queue {queues} transfers calls, and the operation context "
            "of each is signed with it so only calls this app answered are transferred (openssl rand -hex 32)"
        )

"""Writes ``local.settings.example.json``: every app setting for ``func start``, from the one settings list.

``cp local.settings.example.json local.settings.json`` (gitignored), then fill in the ``<...>``
placeholders: that is the Functions host's local settings file for running against a real ACS
resource from a laptop (docs/deploy.md, "Running against real ACS from a laptop"). The values come
from ``shared/adapters/settings.py``'s ``SETTINGS``: a default where the setting has one, a
placeholder saying where to find the value where it is needed to take calls, and ``""`` (unset)
otherwise. ``AzureWebJobsStorage`` and ``FUNCTIONS_WORKER_RUNTIME`` are the host's own.

``make local-settings`` rewrites the file; tests/local/test_settings_example.py fails when the
committed file differs from what this prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from shared.adapters.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "local.settings.example.json"

#: The Functions host's own settings, before the app's. Azurite's connection string: the host keeps its
#: locks and keys in storage, and an Event Grid trigger does not start without it.
HOST_SETTINGS = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "FUNCTIONS_WORKER_RUNTIME": "python",
}

#: Where a newcomer finds each value a laptop run needs (docs/deploy.md says more). A placeholder left
#: in place must not pass for a value: the context key's is shorter than the 32 characters start-up demands.
PLACEHOLDERS = {
    "ACS_ENDPOINT": "https://<acs-resource-name>.communication.azure.com",
    "ACS_ACCESS_KEY": "<ACS resource → Keys → Primary key (local runs only)>",
    "HANDOFF_CALLBACK_URL": "https://<your-dev-tunnel-host>/api/callbacks",
    "ACS_RESOURCE_ID": "<the ACS resource's immutableResourceId (a GUID): see docs/deploy.md>",
    "HANDOFF_CONTEXT_KEY": "<openssl rand -hex 32>",
    # The call records in the Azurite the host uses already (its table service, port 10002).
    "HANDOFF_STORE": "UseDevelopmentStorage=true",
}


def example() -> dict[str, object]:
    """The local.settings.json a newcomer copies, as a JSON object."""
    values = dict(HOST_SETTINGS)
    for setting in SETTINGS:
        value = setting.default if setting.default is not None else PLACEHOLDERS.get(setting.name, "")
        if setting.required and not value:
            raise ValueError(f"setting {setting.name} is required: give it a placeholder in local/settings_example.py")
        values[setting.name] = value
    return {"IsEncrypted": False, "Values": values}


def render() -> str:
    return json.dumps(example(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    EXAMPLE.write_text(render(), encoding="utf-8")
    print(f"wrote {EXAMPLE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Settings and the routing file they name: read once at start-up, every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters import settings
from shared.core import config
from tests.conftest import EXAMPLES


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"missing\.yaml: cannot read"):
        settings.load_routing(str(tmp_path / "missing.yaml"))


#: The three settings without a default, as a developer's first run has them.
MINIMAL = {
    "ACS_ENDPOINT": "http://127.0.0.1:9",
    "ACS_ACCESS_KEY": "a2V5",
    "HANDOFF_CALLBACK_URL": "https://x.example/api/callbacks",
}


def test_settings_are_read_with_their_defaults() -> None:
    loaded = settings.load(MINIMAL)
    assert loaded.config_path == "routing.yaml"
    assert loaded.deadline_seconds == 10.0
    assert loaded.openid_config_url == settings.DEFAULT_OPENID_CONFIG_URL
    assert loaded.acs_resource_id is None
    assert loaded.context_keys == ()


def test_context_keys_are_read_as_a_rotation_list_and_never_echoed() -> None:
    first, second = "a" * 32 + "-first", "b" * 40
    loaded = settings.load({**MINIMAL, "HANDOFF_CONTEXT_KEY": f" {first} , {second} "})
    assert loaded.context_keys == (first, second)
    assert first not in repr(loaded) and second not in repr(loaded)
    with pytest.raises(settings.SettingsError) as info:
        settings.load({**MINIMAL, "HANDOFF_CONTEXT_KEY": f"{first},too-short-secret"})
    assert "too-short-secret" not in str(info.value) and "HANDOFF_CONTEXT_KEY" in str(info.value)


def test_a_routing_without_transfer_queues_needs_neither_resource_id_nor_context_key(
    example_routing: config.Routing,
) -> None:
    answer_only = config.parse(
        (EXAMPLES / "routing.example.yaml")
        .read_text(encoding="utf-8")
        .replace("action: transfer          #", "action: redirect          #")
        .replace(
            "    uui_format: hex           # plain | hex | pd4 : how the context is re-encoded for the target\n", ""
        )
    )
    assert all(q.action != "transfer" for q in answer_only.queues.values())
    settings.check_for_routing(settings.load(MINIMAL), answer_only)  # no error
    with pytest.raises(settings.SettingsError, match="ACS_RESOURCE_ID is required: queue billing"):
        settings.check_for_routing(settings.load(MINIMAL), example_routing)

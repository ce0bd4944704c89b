"""local.settings.example.json: the Functions host's local settings for a newcomer, from the one settings list."""

from __future__ import annotations

import json

import pytest

from local import settings_example
from shared.adapters import settings
from tests.conftest import ROOT

COMMITTED = ROOT / "local.settings.example.json"


def test_the_committed_example_is_what_the_settings_list_generates() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == settings_example.render(), (
        "local.settings.example.json is out of date: run `make local-settings` and commit the result"
    )


def test_the_example_names_every_app_setting_and_what_func_start_needs() -> None:
    values = json.loads(COMMITTED.read_text(encoding="utf-8"))["Values"]
    assert list(values) == ["AzureWebJobsStorage", "FUNCTIONS_WORKER_RUNTIME", *(s.name for s in settings.SETTINGS)]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert all(isinstance(v, str) for v in values.values())  # the host reads Values as strings only
    for setting in settings.SETTINGS:
        if setting.default is not None:
            assert values[setting.name] == setting.default


def test_a_copy_left_unfilled_fails_start_up_naming_the_setting() -> None:
    # The placeholder context key is not a key: start-up refuses it rather than signing with it.
    values = json.loads(COMMITTED.read_text(encoding="utf-8"))["Values"]
    with pytest.raises(settings.SettingsError, match="HANDOFF_CONTEXT_KEY"):
        settings.load(values)


def test_a_new_required_setting_without_a_placeholder_cannot_be_generated(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = settings.Setting("HANDOFF_NEW_THING", "Something new.", required=True)
    monkeypatch.setattr(settings_example, "SETTINGS", (*settings.SETTINGS, extra))
    with pytest.raises(ValueError, match="HANDOFF_NEW_THING"):
        settings_example.render()


def test_the_real_local_settings_file_stays_out_of_git_and_of_the_package() -> None:
    gitignore = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    funcignore = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    assert "local.settings.json" in gitignore
    assert {"local.settings.json", "local.settings.example.json", "test.http"} <= set(funcignore)

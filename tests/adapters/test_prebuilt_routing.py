"""The prebuilt routing table (``routing.yaml.prebuilt``, written by ``make package``): the same
table the validator builds, used only for exactly the bytes it was built from.

A prebuilt table that outlived its file would route calls by rules the operator no longer wrote,
so every way it can stop matching is tried here: an edited file, an edited file that is now
invalid, a damaged table, a table of another format.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from shared.adapters import settings
from shared.core import config
from tests.conftest import EXAMPLES, ROOT

#: Every operator, both operand forms of a set, RE2 with and without ignore_case, numbers written as
#: decimals, a sensitive variable, Avaya items, and every queue action.
EVERYTHING = """\
queues:
  app: {action: answer, callback_url: "https://agents.example.com/api/callbacks"}
  ring: {action: redirect, target: "+14255550123"}
  onward: {action: transfer, target: "8:acs:1111", uui_format: hex}
  closed: {action: reject, reason: busy}
workstreams:
  - name: avaya
    numbers: ["+14255550100", "+14255550101"]
    uui: {profile: avaya-shared, items: {c8: UserData}}
    context_variables:
      - {name: UserData, type: text}
      - {name: Intent, type: text}
      - {name: Score, type: number}
      - {name: IsVip, type: boolean}
      - {name: AccountNumber, type: text, sensitive: true}
    rules:
      - name: shape
        when:
          Intent: {matches: "^bill(ing)?$", ignore_case: true}
          UserData: {matches: "^[0-9]+$"}
        queue: onward
      - name: sets
        when:
          Intent: {in: [billing, payments, "007"], not_in: [fraud]}
          Score: {gte: 1.50, lt: 10}
        queue: ring
      - name: rest
        when:
          IsVip: {eq: true}
          AccountNumber: {exists: true}
          caller: {ne: "+14255550000"}
        queue: closed
    fallback_queue: app
default_queue: app
"""


def plain(value: Any) -> Any:
    """A comparable form of a routing table: RE2 patterns by their pattern and case option (two
    compiled patterns never compare equal), sets in a fixed order, dataclasses with their type."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, *(plain(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, Mapping):
        return tuple((k, plain(v)) for k, v in value.items())
    if isinstance(value, frozenset):
        return ("frozenset", sorted(map(repr, value)))
    if isinstance(value, tuple | list):
        return tuple(plain(v) for v in value)
    if type(value).__name__ == "_Regexp":
        return ("re2", value.pattern, value.options.case_sensitive)
    return (type(value).__name__, value)


def prebuilt_beside(path: Path) -> None:
    (path.parent / (path.name + settings.PREBUILT_SUFFIX)).write_bytes(settings.prebuild_routing(str(path)))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param((ROOT / "routing.yaml").read_text(encoding="utf-8"), id="routing.yaml"),
        pytest.param((EXAMPLES / "routing.example.yaml").read_text(encoding="utf-8"), id="routing.example.yaml"),
        pytest.param(EVERYTHING, id="every-operator-and-action"),
    ],
)
def test_the_prebuilt_table_is_the_table_the_validator_builds(tmp_path: Path, text: str) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    prebuilt_beside(path)
    loaded = settings.load_routing(str(path))
    assert plain(loaded) == plain(config.parse(text, source=str(path)))
    assert loaded.source == str(path)


def test_a_matching_prebuilt_table_is_what_start_up_uses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(EVERYTHING, encoding="utf-8")
    prebuilt_beside(path)

    def no_validator(*_: Any, **__: Any) -> Any:
        raise AssertionError("validated the file although its prebuilt table matches")

    monkeypatch.setattr(config, "parse", no_validator)
    table = settings.load_routing(str(path))
    [rule] = [r for r in table.workstreams[0].rules if r.name == "shape"]
    assert rule.conditions[0].operand.search("BILLING") is not None  # ignore_case survived the round trip
    assert rule.conditions[1].operand.search("12a") is None


def test_an_edited_file_is_validated_again_and_its_new_rules_are_the_ones_used(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(EVERYTHING, encoding="utf-8")
    prebuilt_beside(path)
    path.write_text(EVERYTHING.replace('target: "+14255550123"', 'target: "+14255550999"'), encoding="utf-8")
    assert settings.load_routing(str(path)).queues["ring"] == config.RedirectQueue("+14255550999")


def test_an_edited_file_that_is_now_invalid_fails_start_up_rather_than_using_the_old_table(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(EVERYTHING, encoding="utf-8")
    prebuilt_beside(path)
    path.write_text(EVERYTHING.replace("queue: closed", "queue: nowhere"), encoding="utf-8")
    with pytest.raises(
        config.ConfigError, match=r"routing\.yaml:\d+: workstream 'avaya', rule 'rest': queue 'nowhere'"
    ):
        settings.load_routing(str(path))


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(b"not a pickle", id="damaged"),
        pytest.param(b"", id="empty"),
        pytest.param(pickle.dumps({"format": 99, "sha256": "", "routing": None}), id="another-format"),
        pytest.param(pickle.dumps(["a", "list"]), id="not-a-record"),
    ],
)
def test_a_prebuilt_table_that_cannot_be_used_is_ignored(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(EVERYTHING, encoding="utf-8")
    (tmp_path / ("routing.yaml" + settings.PREBUILT_SUFFIX)).write_bytes(blob)
    assert plain(settings.load_routing(str(path))) == plain(config.parse(EVERYTHING, source=str(path)))


def test_a_record_whose_table_is_not_a_routing_table_is_ignored(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "routing.yaml"
    path.write_text(EVERYTHING, encoding="utf-8")
    record = {"format": 1, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "routing": {"queues": {}}}
    (tmp_path / ("routing.yaml" + settings.PREBUILT_SUFFIX)).write_bytes(pickle.dumps(record))
    assert settings.load_routing(str(path)).default_queue == "app"


def test_windows_line_ends_read_the_same_with_or_without_a_prebuilt_table(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_bytes(EVERYTHING.replace("\n", "\r\n").encode())
    fresh = settings.load_routing(str(path))
    prebuilt_beside(path)
    assert plain(settings.load_routing(str(path))) == plain(fresh) == plain(config.parse(EVERYTHING, str(path)))


def test_prebuilding_an_invalid_file_raises_its_report(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(EVERYTHING.replace("fallback_queue: app", "fallback_queue: gone"), encoding="utf-8")
    with pytest.raises(config.ConfigError, match=r"^invalid routing configuration:\n  routing\.yaml:\d+: "):
        settings.prebuild_routing(str(path), source="routing.yaml")

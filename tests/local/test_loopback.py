"""local/loopback.py: NO_PROXY names loopback when a proxy is named, and is left alone otherwise."""

from __future__ import annotations

import os

import pytest

from local import loopback

NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def test_with_a_proxy_named_loopback_goes_direct_and_what_was_there_stays(clean: pytest.MonkeyPatch) -> None:
    clean.setenv("https_proxy", "http://proxy.corp.example:3128")
    clean.setenv("NO_PROXY", "corp.example, localhost")
    loopback.direct()
    assert os.environ["NO_PROXY"] == "corp.example,localhost,127.0.0.1,::1"
    assert os.environ["no_proxy"] == "127.0.0.1,localhost,::1"


def test_without_a_proxy_the_environment_is_left_as_it_is(clean: pytest.MonkeyPatch) -> None:
    """A matching NO_PROXY makes requests skip its per-request environment scan: setting one where no
    proxy is named would make the benchmarks' SDK-default client cheaper than it is in Azure."""
    loopback.direct()
    assert "NO_PROXY" not in os.environ
    assert "no_proxy" not in os.environ

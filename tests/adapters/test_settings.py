"""Settings and the routing file they name: read once at start-up, every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters import settings
from shared.core import config


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"missing\.yaml: cannot read"):
        settings.load_routing(str(tmp_path / "missing.yaml"))

"""The reliability suite: faults, long runs, forged requests and bad input, on real processes.

Everything in this folder carries the `reliability` marker, so `pytest -m reliability` runs it
alone (it also runs as part of the whole suite).
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


# First, before `-m` deselects by marker.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.reliability)

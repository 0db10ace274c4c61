"""Test-run settings shared by every folder.

With pytest-xdist (`pytest -n 2 --dist loadgroup`, the README's command), each
test file runs whole on one worker, so a module's expensive fixture (a trained
session, a real Siril's first run) is built once; the real-Siril suite is one
group, since its files share one Siril home and one Xvfb display.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_REAL_SIRIL = Path(__file__).parent / "real_siril"


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too, so that a run without pytest-xdist does not warn about an unknown mark.
    config.addinivalue_line("markers", "xdist_group(name): tests that run on the same pytest-xdist worker")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        group = "real_siril" if _REAL_SIRIL in path.parents else path.stem
        item.add_marker(pytest.mark.xdist_group(group))

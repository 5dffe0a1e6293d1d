"""Shared fixtures: golden files."""

from __future__ import annotations

from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


def pytest_addoption(parser):
    parser.addoption("--regen-golden", action="store_true", help="rewrite golden files from the current output")


@pytest.fixture
def golden(request):
    """Compare text with a golden file; --regen-golden rewrites it (a deliberate act)."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if request.config.getoption("--regen-golden"):
            path.write_text(text)
        assert path.exists(), f"no golden file {name}: run pytest --regen-golden once and review it"
        assert text == path.read_text()

    return check

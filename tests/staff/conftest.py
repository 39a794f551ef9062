"""Fixtures of the staff pages' browser tests (``-m browser``). The live server
and the browser are shared by every browser test: tests/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: ``$STAFF_SCREENSHOTS`` (docs/screenshots/ is made
    this way), else the test's temporary folder."""
    folder = Path(os.environ.get("STAFF_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder

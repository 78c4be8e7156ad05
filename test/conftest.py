"""Project-wide pytest helpers. Keep this generic: area-specific fixtures live in their test files."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the repository: reference vectors, real videos, ROS notes. CI and the
# developers' machines have it; a user's clone does not.
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path of ``../shared`` (the repository root's sibling); skips the test when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} not found: CI and dev machines have it; a user's clone does not")
    return SHARED_DIR

"""Shared pytest fixtures."""

import os
import pathlib

import pytest


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    """The authors' ground-truth fixtures: ../shared/fixtures from the repo, or $MATPAC_FIXTURES."""
    default = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures"
    path = pathlib.Path(os.environ.get("MATPAC_FIXTURES", default))
    if not path.is_dir():
        pytest.skip(f"fixtures directory not found: {path} (set MATPAC_FIXTURES)")
    return path

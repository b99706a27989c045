"""Shared fixtures: a private bundle cache per test session, so tests never read or
write the user's ~/.cache and a fresh machine trains the digits model exactly once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from targets.bundles.resolve import get_bundle
from targets.files import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def bundle_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("bundle-cache")
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(path)  # inherited by every server and driver started
    yield path
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(scope="session")
def digits(bundle_cache: Path):  # type: ignore[no-untyped-def]

    bundle = get_bundle("digits")
    bundle.load()
    return bundle

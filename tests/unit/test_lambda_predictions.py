"""How a Lambda environment's handler opens its prediction log from the configuration
the emulator hands it (targets.awslambda.predictions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from targets.awslambda.predictions import LOG_DIR_ENV, LOG_RATE_ENV, open_log
from targets.bundles.protocol import Prediction
from targets.predlog import count_rows, read_log


class FakeBundle:
    name = "fake"

    def info(self) -> dict[str, Any]:
        return {"sha256": "0123456789abcdef"}


def test_off_unless_a_rate_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOG_RATE_ENV, raising=False)
    assert open_log(FakeBundle()) is None  # type: ignore[arg-type]
    monkeypatch.setenv(LOG_RATE_ENV, "0")
    assert open_log(FakeBundle()) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(("rate", "folder", "message"), [
    ("1.5", "x", "fraction"), ("lots", "x", "could not convert"), ("0.5", "", LOG_DIR_ENV)])
def test_a_bad_configuration_fails_init(monkeypatch: pytest.MonkeyPatch, rate: str,
                                        folder: str, message: str) -> None:
    monkeypatch.setenv(LOG_RATE_ENV, rate)
    monkeypatch.setenv(LOG_DIR_ENV, folder)
    with pytest.raises(ValueError, match=message):
        open_log(FakeBundle())  # type: ignore[arg-type]


def test_each_row_is_committed_before_record_returns(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv(LOG_RATE_ENV, "1.0")
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "preds"))
    log = open_log(FakeBundle())  # type: ignore[arg-type]
    assert log is not None
    assert log.synchronous
    assert log.version == "fake@0123456789ab"
    log.record(np.ones((1, 4), dtype=np.float32), [Prediction(2, (0.1, 0.9))])
    # Not closed (a frozen environment is killed without its exit): already in the db.
    assert count_rows(tmp_path / "preds") == 1
    [row] = read_log(tmp_path / "preds")
    assert row.output == [(2, (0.1, 0.9))]
    log.close()

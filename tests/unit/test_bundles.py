from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from targets import bundle
from targets.bundles import protocol
from targets.bundles.digits import MIN_ACCURACY, DigitsBundle
from targets.bundles.protocol import serve_batch
from targets.bundles.resolve import get_bundle
from targets.errors import BundleError
from targets.files import sha256_file


def test_digits_is_accurate_and_cached_with_checksum(digits) -> None:  # type: ignore[no-untyped-def]
    info = digits.info()
    assert info["accuracy"] >= MIN_ACCURACY
    meta = json.loads(digits.meta_path.read_text())

    assert meta["sha256"] == sha256_file(digits.weights_path)


def test_digits_training_is_deterministic(tmp_path: Path) -> None:
    a, b = DigitsBundle(tmp_path / "a"), DigitsBundle(tmp_path / "b")
    a.load()
    b.load()
    assert a._net is not None
    assert b._net is not None
    for (name, p), (_, q) in zip(a._net.state_dict().items(), b._net.state_dict().items(),
                                 strict=True):
        assert torch.equal(p, q), name


def test_corrupt_cache_is_retrained(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bundle = DigitsBundle(tmp_path / "d")
    bundle.prepare()
    bundle.weights_path.write_bytes(b"garbage")
    again = DigitsBundle(tmp_path / "d")
    again.load()  # retrains instead of loading garbage
    assert "checksum" in caplog.text
    assert again.info()["accuracy"] >= MIN_ACCURACY


def test_digits_predicts_known_examples(digits) -> None:  # type: ignore[no-untyped-def]
    examples = digits.example_requests()
    assert len(examples) == 64
    assert all(e.shape == (1, 64) and e.dtype == np.float32 for e in examples)
    preds = [serve_batch(digits, e)[0] for e in examples]
    assert all(abs(sum(p.probabilities) - 1) < 1e-5 for p in preds)
    assert len({p.label for p in preds}) == 10  # real predictions, every class seen


def test_batch_predictions_match_single() -> None:
    bundle = get_bundle("digits")
    bundle.load()
    examples = bundle.example_requests()[:5]
    batch = np.concatenate(examples)
    together = serve_batch(bundle, batch)
    alone = [serve_batch(bundle, e)[0] for e in examples]
    for t, a in zip(together, alone, strict=True):
        assert t.label == a.label
        assert max(abs(x - y) for x, y in zip(t.probabilities, a.probabilities,
                                              strict=True)) < 1e-5


def test_vision_is_deterministic_and_shaped() -> None:
    a, b = get_bundle("vision"), get_bundle("vision")
    a.load()
    b.load()
    examples = a.example_requests()
    assert examples[0].shape == (1, 3, 224, 224)
    pa, pb = serve_batch(a, examples[0])[0], serve_batch(b, examples[0])[0]
    assert pa == pb
    assert len(pa.probabilities) == 10
    assert np.isfinite(pa.probabilities).all()


def test_vision_weights_have_a_checksum_the_runner_records() -> None:
    a, b = get_bundle("vision"), get_bundle("vision")
    assert a.weights_sha256() is None  # nothing loaded
    a.load()
    b.load()
    digest = a.weights_sha256()
    assert digest is not None
    assert len(digest) == 64
    assert digest == b.weights_sha256()  # seeded: the same model every time
    assert a.info()["sha256"] is None  # servers read info(): no 30 ms hash at start-up
    assert protocol.recorded_info(a)["sha256"] == digest
    with torch.no_grad():
        next(b._net.parameters()).view(-1)[0] += 1e-3  # one weight, slightly
    assert b.weights_sha256() != digest


class _Half(protocol.TorchClassifier):
    """A bundle in bfloat16 (numpy has no such dtype), with a 0-d buffer."""

    name, description, input_shape, classes, preprocessing = "half", "", (4,), 2, ""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self._net = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.BatchNorm1d(2))
        self._net.to(dtype)


def test_any_dtype_is_hashed_and_a_failure_loses_no_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    half = _Half(torch.bfloat16)
    digest = half.weights_sha256()
    assert digest is not None
    assert digest != _Half(torch.float32).weights_sha256()
    assert protocol.recorded_info(half)["sha256"] == digest

    def broken() -> str:
        raise RuntimeError("a quantized state")

    monkeypatch.setattr(half, "weights_sha256", broken)
    assert protocol.recorded_info(half)["sha256"] is None


def test_unknown_bundle_names_the_choices() -> None:
    with pytest.raises(BundleError, match="digits"):
        get_bundle("resnet9000")


def test_bundle_files_that_import_targets_bundle_keep_working() -> None:
    """Bundle files import ``targets.bundle`` (tests/fixtures/bundles/fixed_service.py
    does): the names there are the protocol's own."""
    for name in bundle.__all__:
        assert getattr(bundle, name) is getattr(protocol, name), name
    fixed = get_bundle(str(Path(__file__).parents[1] / "fixtures" / "bundles"
                           / "fixed_service.py"))
    assert fixed.input_shape

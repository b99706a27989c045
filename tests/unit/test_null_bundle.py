"""The ``null`` calibration bundle: a fixed answer per row, deterministic, no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from targets.bundles.null import ANSWER, CLASSES, NullBundle
from targets.bundles.protocol import BUILTIN_BUNDLES, compare_predictions, serve_batch
from targets.bundles.resolve import get_bundle
from targets.wire import codec


def _loaded() -> NullBundle:
    bundle = get_bundle("null")
    assert isinstance(bundle, NullBundle)
    bundle.prepare()
    bundle.load()
    return bundle


def test_null_is_a_built_in_bundle() -> None:
    assert "null" in BUILTIN_BUNDLES
    bundle = _loaded()
    assert bundle.name == "null"
    assert bundle.input_shape == (64,)
    assert bundle.default_encoding in codec.ENCODINGS


def test_examples_are_deterministic_small_single_rows() -> None:
    a, b = _loaded().example_requests(), _loaded().example_requests()
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.shape == (1, 64)
        assert x.dtype == np.float32
        assert np.array_equal(x, y)
        assert np.isfinite(x).all()
    assert not all(np.array_equal(a[0], x) for x in a[1:])  # not one request repeated


@pytest.mark.parametrize("rows", [1, 2, 7, 64])
def test_one_fixed_answer_per_row_whatever_the_input(rows: int) -> None:
    bundle = _loaded()
    batch = np.random.default_rng(rows).normal(size=(rows, 64)).astype(np.float32)
    assert serve_batch(bundle, batch) == [ANSWER] * rows
    assert serve_batch(bundle, np.zeros((rows, 64), dtype=np.float32)) == [ANSWER] * rows


def test_answer_is_a_valid_exact_distribution() -> None:
    assert len(ANSWER.probabilities) == CLASSES
    assert sum(ANSWER.probabilities) == 1.0
    assert ANSWER.label == int(np.argmax(ANSWER.probabilities))
    # Exact in float32 (gRPC's wire type) and through the JSON codec: parity is exact.
    assert all(float(np.float32(p)) == p for p in ANSWER.probabilities)
    assert codec.decode_predictions(codec.encode_predictions([ANSWER])) == [ANSWER]


def test_parity_with_itself_is_exact() -> None:
    a, b = _loaded(), _loaded()
    for example in a.example_requests():
        problem, diff = compare_predictions(serve_batch(a, example), serve_batch(b, example))
        assert problem is None
        assert diff == 0.0


def test_examples_survive_both_wire_encodings() -> None:
    bundle = _loaded()
    for encoding in codec.ENCODINGS:
        for example in bundle.example_requests():
            body, headers = codec.encode_request(example, encoding)
            decoded = codec.decode_request(headers["Content-Type"], body, headers,
                                           bundle.input_shape)
            assert np.array_equal(decoded, example)


def test_info_says_it_is_the_calibration_bundle_without_a_model() -> None:
    info = _loaded().info()
    assert info["name"] == "null"
    assert info["calibration"] is True
    assert info["parameters"] == 0
    assert info["accuracy"] is None
    assert "no model" in info["description"]
    assert "without a model" in info["preprocessing"]


def test_serving_it_never_imports_torch() -> None:
    """The whole path a target takes (get, prepare, load, examples, serve, encode) runs
    with torch made unimportable."""
    script = (
        "import sys\n"
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        "from targets.wire import codec\n"
        "from targets.bundles.protocol import serve_batch\n"
        "from targets.bundles.resolve import get_bundle\n"
        "b = get_bundle('null'); b.prepare(); b.load()\n"
        "for e in b.example_requests():\n"
        "    codec.encode_predictions(serve_batch(b, e))\n"
        "b.info()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

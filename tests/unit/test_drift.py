"""The drift check's statistics (targets/drift.py), its features and the shipped references."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from targets import drift
from targets.bundles.digits import DigitsBundle
from targets.bundles.null import NullBundle
from targets.bundles.resolve import get_bundle
from targets.bundles.vision import VisionBundle


def test_psi_is_zero_for_equal_shares_and_matches_the_formula() -> None:
    shares = np.full(10, 0.1)
    assert drift.psi(shares, shares) == 0.0
    expected, actual = np.array([0.5, 0.5]), np.array([0.2, 0.8])
    by_hand = (0.2 - 0.5) * np.log(0.2 / 0.5) + (0.8 - 0.5) * np.log(0.8 / 0.5)
    assert drift.psi(expected, actual) == pytest.approx(by_hand)


def test_an_empty_bin_counts_as_epsilon_not_infinity() -> None:
    value = drift.psi(np.array([0.5, 0.5]), np.array([1.0, 0.0]))
    assert np.isfinite(value)
    assert value == pytest.approx((1 - 0.5) * np.log(1 / 0.5)
                                  + (drift.EPSILON - 0.5) * np.log(drift.EPSILON / 0.5))


def test_bins_are_the_reference_deciles_with_open_ends() -> None:
    ref = drift.feature_reference("f", np.arange(1000, dtype=np.float64))
    assert len(ref.edges) == 9
    assert len(ref.proportions) == 10
    assert ref.proportions == pytest.approx([0.1] * 10)
    shares = drift.bin_shares(ref.edges, np.array([-1e9, 1e9]))  # far outside: end bins
    assert shares[0] == 0.5
    assert shares[-1] == 0.5


def test_tied_deciles_merge_bins() -> None:
    """Mostly zeros, as digits' border pixels: the repeated decile is one edge."""
    values = np.concatenate([np.zeros(900), np.arange(1, 101)])
    ref = drift.feature_reference("f", values)
    assert ref.edges[0] == 0
    assert len(set(ref.edges)) == len(ref.edges)
    assert ref.proportions[0] == pytest.approx(0.9)


def test_same_distribution_is_stable_and_a_shift_is_moved() -> None:
    rng = np.random.default_rng(0)
    ref = drift.feature_reference("f", rng.normal(size=5000))
    same = rng.normal(size=2000)
    shifted = rng.normal(loc=1.0, size=2000)
    same_psi = drift.psi(np.array(ref.proportions), drift.bin_shares(ref.edges, same))
    moved_psi = drift.psi(np.array(ref.proportions), drift.bin_shares(ref.edges, shifted))
    assert same_psi < drift.STABLE
    assert moved_psi >= drift.MOVED
    assert drift.verdict(same_psi) == "stable"
    assert drift.verdict(moved_psi) == "moved"
    assert drift.verdict(0.15) == "moderate"
    assert drift.verdict(0.15, threshold=0.12) == "moved"


def test_ks_against_the_reference_quantiles() -> None:
    rng = np.random.default_rng(1)
    ref = drift.feature_reference("f", rng.normal(size=5000))
    assert len(ref.quantiles) == drift.SAMPLE
    stat, p = drift.ks(np.array(ref.quantiles), rng.normal(size=1000))
    assert stat < 0.08
    assert p > 0.01
    stat, p = drift.ks(np.array(ref.quantiles), rng.normal(loc=0.5, size=1000))
    assert stat > 0.15
    assert p < 1e-6


def test_default_features_flatten_small_examples_and_summarise_large_ones() -> None:
    names, matrix = drift.default_features(np.arange(12, dtype=np.float32).reshape(2, 2, 3))
    assert names == ["x[0,0]", "x[0,1]", "x[0,2]", "x[1,0]", "x[1,1]", "x[1,2]"]
    assert matrix.shape == (2, 6)
    assert matrix[1, 0] == 6
    batch = np.zeros((3, 2, 20, 20), dtype=np.float32)
    batch[:, 1] = 5.0
    names, matrix = drift.default_features(batch)
    assert names == ["ch0.mean", "ch1.mean", "ch0.std", "ch1.std"]
    assert matrix[0].tolist() == [0.0, 5.0, 0.0, 0.0]


def test_a_bundle_may_define_its_drift_features() -> None:
    class Own:
        name = "own"

        def drift_features(self, batch: np.ndarray) -> tuple[list[str], np.ndarray]:
            return ["total"], batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)

    names, matrix = drift.features(Own(), np.ones((4, 3), dtype=np.float32))
    assert names == ["total"]
    assert matrix[:, 0].tolist() == [3.0] * 4

    class Wrong(Own):
        def drift_features(self, batch: np.ndarray) -> tuple[list[str], np.ndarray]:
            return ["a", "b"], np.zeros((len(batch), 3))

    with pytest.raises(drift.DriftError, match=r"must be \(examples, names\)"):
        drift.features(Wrong(), np.ones((4, 3), dtype=np.float32))


def test_digits_features_are_its_pixels_by_row_and_column() -> None:
    names, matrix = drift.features(DigitsBundle(), np.arange(128, dtype=np.float32)
                                   .reshape(2, 64))
    assert len(names) == 64
    assert names[0] == "px[0,0]"
    assert names[3 * 8 + 4] == "px[3,4]"
    assert matrix[1, 3 * 8 + 4] == 64 + 28


def test_vision_summary_features() -> None:
    bundle = VisionBundle()
    batch = np.zeros((2, 3, 224, 224), dtype=np.float32)
    batch[:, 0] = 90.0  # R: a constant channel
    batch[1, :, :56, :56] = 255.0  # top-left block white in the second image
    names, matrix = drift.features(bundle, batch)
    assert names[:6] == ["R.mean", "G.mean", "B.mean", "R.std", "G.std", "B.std"]
    assert names[6] == "bright[0,0]"
    assert names[-1] == "bright[3,3]"
    assert len(names) == 22
    row = dict(zip(names, matrix[0], strict=True))
    assert row["R.mean"] == 90
    assert row["R.std"] == 0
    assert row["G.mean"] == 0
    assert row["bright[0,0]"] == pytest.approx(30)
    assert row["bright[3,3]"] == pytest.approx(30)
    second = dict(zip(names, matrix[1], strict=True))
    assert second["bright[0,0]"] == pytest.approx(255)
    assert second["bright[0,1]"] == 30


def test_examples_of_the_builtins_are_what_they_were() -> None:
    """The reference generators share the examples' code: their requests did not change."""
    rng = np.random.default_rng(0)
    old = rng.integers(0, 17, size=(8, 1, 64)).astype(np.float32)
    assert all(np.array_equal(a, b) for a, b in zip(old, NullBundle().example_requests(),
                                                     strict=True))
    rng = np.random.default_rng(1234)
    first = rng.uniform(0, 255, size=(1, 3, 28, 28)).astype(np.float32)
    assert np.array_equal(VisionBundle().example_requests()[0],
                          first.repeat(8, axis=2).repeat(8, axis=3))


@pytest.mark.parametrize("name", ["digits", "vision", "null"])
def test_the_shipped_reference_is_what_its_generator_writes_now(name: str) -> None:
    """Regenerate with `deploybench drift --write-reference NAME` when this fails."""
    path = drift.shipped_reference_path(name)
    shipped = json.loads(path.read_text())
    bundle = get_bundle(name)
    source, batches = bundle.drift_reference_inputs()  # type: ignore[attr-defined]
    now = json.loads(drift.reference_text(drift.build_reference(bundle, batches, source)))
    _assert_close(shipped, now, name)
    assert path.stat().st_size < 300_000  # a few hundred KB at most


def _assert_close(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict), where
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list), where
        assert len(a) == len(b), where
        if a and all(isinstance(x, int | float) for x in a):
            np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=where)
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-6), where
    else:
        assert a == b, where


def test_a_reference_round_trips_through_its_file(tmp_path: Any) -> None:
    rng = np.random.default_rng(2)
    ref = drift.build_reference(NullBundle(), [rng.normal(size=(300, 64))], "test")
    path = tmp_path / "ref.json"
    path.write_text(drift.reference_text(ref))
    back = drift.load_reference(path)
    assert back.names == ref.names
    assert back.examples == 300
    assert back.features[5].edges == pytest.approx(ref.features[5].edges, rel=1e-6)


def test_a_malformed_reference_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "ref.json"
    path.write_text('{"format": 99}')
    with pytest.raises(drift.DriftError, match="--write-reference"):
        drift.load_reference(path)


def test_compare_sorts_moved_first_and_refuses_other_features() -> None:
    rng = np.random.default_rng(3)
    ref = drift.build_reference(NullBundle(), [rng.normal(size=(2000, 64))], "test")
    logged = rng.normal(size=(1000, 64))
    logged[:, 7] += 2.0
    names = [f"x[{i}]" for i in range(64)]
    results = drift.compare(ref, names, logged)
    assert results[0].name == "x[7]"
    assert results[0].moved
    assert [r.name for r in results if r.moved] == ["x[7]"]
    assert results[0].logged_mean == pytest.approx(2.0, abs=0.15)
    with pytest.raises(drift.DriftError, match="regenerate the reference"):
        drift.compare(ref, names[:10], logged[:, :10])

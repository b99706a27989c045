"""The drift check's statistics: did the inputs a deployment logged (``--log-predictions``)
move away from what the model was trained on?

Per *drift feature* (a bundle's ``drift_features(batch)``, or :func:`default_features`),
two numbers against a :class:`Reference` computed once from the training inputs:

* the **population stability index** (PSI) over the reference's deciles:
  ``sum((a - e) * ln(a / e))`` over ~10 bins, ``e`` the reference's share of a bin and
  ``a`` the log's. The bins' inner edges are the reference's distinct deciles (ties, as in
  digits' many zero pixels, merge bins), the first and last bins are open, and an empty
  bin counts as :data:`EPSILON` so the logarithm stays finite. The usual reading, from
  credit scoring (N. Siddiqi, *Credit Risk Scorecards*, Wiley 2006, ch. 8): below 0.1
  stable, 0.1 to 0.25 a moderate shift, 0.25 and above a population that moved.
* the **two-sample Kolmogorov-Smirnov** statistic and p-value (scipy's ``ks_2samp``)
  against the reference's :data:`SAMPLE` quantiles, standing in for a sample of that size.

A feature is "moved" when its PSI reaches the threshold; the KS p-value is shown beside
it, not gated on: over thousands of logged rows a shift too small to matter is still
"significant". Both are noisy over few distinct examples (64 unshifted digits test images
average a PSI of ~0.1 per pixel and push 1 to 7 of the 64 past 0.25 by chance; 100 push
none), hence :data:`MIN_EXAMPLES`.

Nothing here imports a bundle: the caller hands one in, and the shipped references live
in :data:`REFERENCE_DIR` as JSON (``deploybench drift --write-reference NAME`` writes them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from targets.errors import TargetError

#: Where the built-in bundles' references are shipped: ``NAME.json``.
REFERENCE_DIR = Path(__file__).resolve().parent / "bundles" / "reference"
#: The reference file's format; bump when its fields change.
REFERENCE_FORMAT = 1
#: Deciles: 10 bins, the usual choice for PSI.
BINS = 10
#: An empty bin's share (either side), so ln(a / e) stays finite: the common choice.
EPSILON = 1e-4
#: Siddiqi's thresholds: below STABLE no shift, from MOVED on a moved population.
STABLE = 0.1
MOVED = 0.25
#: Reference quantiles kept per feature for the KS test.
SAMPLE = 500
#: Fewer distinct logged examples than this and the figures are mostly sampling noise.
MIN_EXAMPLES = 100
#: Above this many values per example, the default features summarise per channel.
MAX_FLAT = 256


class DriftError(TargetError):
    """A reference or a log the drift check cannot use; the message says why."""


# -- features ---------------------------------------------------------------------------
def default_features(batch: np.ndarray) -> tuple[list[str], np.ndarray]:
    """``(names, matrix (N, F))`` for a batch ``(N, *shape)``: every value when an example
    holds at most :data:`MAX_FLAT` (``x[i]``, ``x[i,j]``), else the mean and standard
    deviation of each channel (the first axis after the batch: ``ch0.mean``, ``ch0.std``)."""
    shape = batch.shape[1:]
    n = batch.shape[0]
    if math.prod(shape) <= MAX_FLAT:
        names = ["x[" + ",".join(str(i) for i in index) + "]" for index in np.ndindex(*shape)]
        return names, batch.reshape(n, -1).astype(np.float64)
    channels = batch.reshape(n, shape[0], -1).astype(np.float64)
    names = [f"ch{c}.{stat}" for stat in ("mean", "std") for c in range(shape[0])]
    return names, np.concatenate([channels.mean(axis=2), channels.std(axis=2)], axis=1)


def optional_member(bundle: Any, name: str) -> Any:
    """A bundle's optional member (``drift_features``, ``drift_reference_inputs``), the
    user's own where targets.bundles.user.FileBundle wraps their object; None without."""
    own = getattr(bundle, name, None)
    return own if own is not None else getattr(getattr(bundle, "inner", None), name, None)


def features(bundle: Any, batch: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The bundle's drift features of ``batch``: its ``drift_features(batch)`` where it
    defines one (a user bundle module's object too), else :func:`default_features`."""
    own = optional_member(bundle, "drift_features")
    if own is None:
        return default_features(batch)
    names, matrix = own(batch)
    matrix = np.asarray(matrix, dtype=np.float64)
    names = [str(name) for name in names]
    if matrix.shape != (batch.shape[0], len(names)):
        raise DriftError(f"drift_features() of bundle {getattr(bundle, 'name', '?')} answered "
                         f"a matrix of shape {matrix.shape} for {batch.shape[0]} examples and "
                         f"{len(names)} names: it must be (examples, names)")
    if len(set(names)) != len(names):
        raise DriftError(f"drift_features() of bundle {getattr(bundle, 'name', '?')} "
                         "repeats a feature name")
    return names, matrix


# -- the reference ----------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureReference:
    name: str
    mean: float
    #: Inner bin edges (the distinct deciles); bins are (-inf, e0], (e0, e1], ..., (ek, inf).
    edges: tuple[float, ...]
    #: The reference's share of each bin (len(edges) + 1).
    proportions: tuple[float, ...]
    #: SAMPLE evenly spaced quantiles, the KS test's reference sample.
    quantiles: tuple[float, ...]


@dataclass(frozen=True)
class Reference:
    bundle: str
    #: Where the reference came from, in words (the training split, generated examples...).
    source: str
    examples: int
    features: tuple[FeatureReference, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_json(self) -> dict[str, Any]:
        return {"format": REFERENCE_FORMAT, "bundle": self.bundle, "source": self.source,
                "examples": self.examples, "bins": BINS, "sample": SAMPLE,
                "features": [{"name": f.name, "mean": _compact(f.mean),
                              "edges": [_compact(e) for e in f.edges],
                              "proportions": [_compact(p) for p in f.proportions],
                              "quantiles": [_compact(q) for q in f.quantiles]}
                             for f in self.features]}

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str) -> Reference:
        if not isinstance(doc, dict) or doc.get("format") != REFERENCE_FORMAT:
            raise DriftError(f"{where} is not a drift reference of format {REFERENCE_FORMAT} "
                             "(write it again with `deploybench drift --write-reference`)")
        try:
            feats = tuple(FeatureReference(
                name=str(f["name"]), mean=float(f["mean"]),
                edges=tuple(float(e) for e in f["edges"]),
                proportions=tuple(float(p) for p in f["proportions"]),
                quantiles=tuple(float(q) for q in f["quantiles"])) for f in doc["features"])
            ref = cls(bundle=str(doc["bundle"]), source=str(doc["source"]),
                      examples=int(doc["examples"]), features=feats)
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftError(f"{where}: a malformed drift reference ({exc!r})") from exc
        if any(len(f.proportions) != len(f.edges) + 1 for f in feats):
            raise DriftError(f"{where}: a feature's proportions do not match its bins")
        return ref


def _compact(x: float) -> float | int:
    """Seven significant digits, and whole numbers as integers: a small, stable file."""
    value = float(f"{float(x):.7g}")
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def feature_reference(name: str, values: np.ndarray) -> FeatureReference:
    """One feature's reference from its training values."""
    values = np.asarray(values, dtype=np.float64)
    deciles = np.quantile(values, np.arange(1, BINS) / BINS)
    # Rounded as the file keeps them, so a reference read back bins exactly the same way.
    edges = np.unique([_compact(e) for e in deciles])
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    quantiles = np.quantile(values, (np.arange(SAMPLE) + 0.5) / SAMPLE,
                            method="inverted_cdf")
    return FeatureReference(name=name, mean=float(values.mean()),
                            edges=tuple(float(e) for e in edges),
                            proportions=tuple(float(c) for c in counts / len(values)),
                            quantiles=tuple(float(q) for q in quantiles))


def build_reference(bundle: Any, batches: Iterable[np.ndarray], source: str) -> Reference:
    """A reference from the bundle's training inputs (or a sample like them), given as
    batches ``(B, *input_shape)``: features are computed batch by batch, so a large image
    set never sits in memory whole."""
    names: list[str] | None = None
    parts = []
    for batch in batches:
        batch_names, matrix = features(bundle, np.asarray(batch, dtype=np.float32))
        if names is not None and batch_names != names:
            raise DriftError("drift_features() named different features for two batches")
        names = batch_names
        parts.append(matrix)
    if names is None or sum(len(p) for p in parts) < 2:
        raise DriftError("a reference needs at least 2 examples")
    matrix = np.concatenate(parts)
    return Reference(bundle=str(getattr(bundle, "name", "?")), source=source,
                     examples=len(matrix),
                     features=tuple(feature_reference(n, matrix[:, i])
                                    for i, n in enumerate(names)))


def shipped_reference_path(bundle_name: str) -> Path:
    return REFERENCE_DIR / f"{bundle_name}.json"


def load_reference(path: Path) -> Reference:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DriftError(f"cannot read the drift reference {path} ({exc})") from exc
    return Reference.from_json(doc, str(path))


def reference_text(reference: Reference) -> str:
    """The file's text: one feature a line, so a regenerated file diffs readably."""
    doc = reference.to_json()
    feats = doc.pop("features")
    head = json.dumps(doc, allow_nan=False)[:-1]
    lines = ",\n".join("  " + json.dumps(f, allow_nan=False, separators=(",", ":"))
                       for f in feats)
    return f'{head}, "features": [\n{lines}\n]}}\n'


# -- the statistics ---------------------------------------------------------------------
def bin_shares(edges: tuple[float, ...] | np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each bin's share of ``values``; bins (-inf, e0], (e0, e1], ..., (ek, inf)."""
    edges = np.asarray(edges, dtype=np.float64)
    counts = np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = EPSILON) -> float:
    """The population stability index between two sets of bin shares."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def ks(reference: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (scipy, imported here: ~1 s)."""
    from scipy.stats import ks_2samp

    result = ks_2samp(values, reference)
    return float(result.statistic), float(result.pvalue)


def verdict(value: float, threshold: float = MOVED) -> str:
    if value >= threshold:
        return "moved"
    return "moderate" if value >= STABLE else "stable"


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    ks: float
    p_value: float
    logged_mean: float
    reference_mean: float
    verdict: str

    @property
    def moved(self) -> bool:
        return self.verdict == "moved"


def compare(reference: Reference, names: list[str], matrix: np.ndarray,
            threshold: float = MOVED) -> list[FeatureDrift]:
    """Every feature's drift, flagged ("moved") ones first, then by PSI, largest first."""
    if names != reference.names:
        extra = sorted(set(names) - set(reference.names))[:3]
        missing = sorted(set(reference.names) - set(names))[:3]
        raise DriftError(
            f"the log's drift features differ from the reference of {reference.bundle} "
            f"({len(names)} against {len(reference.names)}; new: {extra or '-'}, gone: "
            f"{missing or '-'}): regenerate the reference (`deploybench drift "
            f"--write-reference`) after changing drift_features()")
    out = []
    for i, ref in enumerate(reference.features):
        values = matrix[:, i]
        value = psi(np.asarray(ref.proportions), bin_shares(ref.edges, values))
        stat, p = ks(np.asarray(ref.quantiles), values)
        out.append(FeatureDrift(name=ref.name, psi=value, ks=stat, p_value=p,
                                logged_mean=float(values.mean()),
                                reference_mean=ref.mean, verdict=verdict(value, threshold)))
    return sorted(out, key=lambda d: (not d.moved, -d.psi, d.name))


def distinct_examples(matrix: np.ndarray) -> int:
    """How many different feature rows the log holds (a load replays a few examples)."""
    return len(np.unique(matrix, axis=0)) if len(matrix) else 0

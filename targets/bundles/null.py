"""``null``: the calibration bundle. It answers a fixed prediction for every row, no model.

Served by any target, it leaves only the cost of the deployment's serving path and of the
load generator: a result near what a target reaches with ``null`` says the harness, not
the model, was measured. Its requests have digits' shape (64 small whole numbers as
float32, encoded the same way) so the bytes on the wire are alike, and its answer has ten
classes like digits'. ``serve_batch`` never imports torch for it (``uses_torch = False``):
predicting is building a list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from targets.bundles.protocol import Prediction

if TYPE_CHECKING:
    from targets.bundles.protocol import Bundle

SEED = 0
N_EXAMPLES = 8
#: The drift reference: rows from the examples' generator, from their own seed.
REFERENCE_SEED = 1
REFERENCE_ROWS = 2000
CLASSES = 10
#: Powers of two summing to exactly 1: every one is exact in float32 (gRPC's wire type)
#: and in JSON, so parity between any two targets is exact, not within a tolerance.
PROBABILITIES: tuple[float, ...] = (*(2.0 ** -k for k in range(1, CLASSES)), 2.0 ** -(CLASSES - 1))
#: The answer for every row, whatever it holds: class 0, the most probable.
ANSWER = Prediction(label=0, probabilities=PROBABILITIES)


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 17, size=(n, *NullBundle.input_shape)).astype(np.float32)


class NullBundle:
    """The Bundle protocol with no model: each step passes the batch on untouched.

    The protocol names torch tensors between the steps; here the "model input" and
    "output" are the validated numpy batch itself, hence ``Any`` in those signatures.
    """

    name = "null"
    description = "calibration: a fixed answer (class 0) for every row, no model, no torch"
    input_shape: tuple[int, ...] = (64,)
    default_encoding = "json"
    #: Read by serve_batch: no torch.inference_mode() around this bundle's calls.
    uses_torch = False

    def prepare(self) -> None:
        """Nothing to train or cache."""

    def load(self) -> None:
        """Nothing to load."""

    def preprocess(self, batch: np.ndarray) -> Any:
        return batch

    def predict(self, inputs: Any) -> Any:
        return inputs

    def postprocess(self, outputs: Any) -> list[Prediction]:
        return [ANSWER] * len(outputs)

    def example_requests(self) -> list[np.ndarray]:
        """Single rows (every served null target answers one prediction per request) of
        whole numbers 0..16, as digits' pixels are: short to encode and to parse."""
        rows = _rows(np.random.default_rng(SEED), N_EXAMPLES)
        return [row[None].copy() for row in rows]

    def drift_reference_inputs(self) -> tuple[str, Iterable[np.ndarray]]:
        """Its inputs' own distribution (whole numbers 0..16, uniform): more rows from the
        examples' generator, from their own seed."""
        return (f"{REFERENCE_ROWS} rows from the example requests' generator (seed "
                f"{REFERENCE_SEED})", [_rows(np.random.default_rng(REFERENCE_SEED),
                                             REFERENCE_ROWS)])

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_shape": list(self.input_shape),
            "classes": CLASSES,
            "parameters": 0,
            "preprocessing": "none: the calibration bundle answers without a model",
            "accuracy": None,
            "sha256": None,
            "examples": N_EXAMPLES,
            "calibration": True,
            "answer": {"label": ANSWER.label, "probabilities": list(ANSWER.probabilities)},
        }


if TYPE_CHECKING:
    # mypy checks the class against the Bundle protocol here.
    _conforms: Bundle = NullBundle()

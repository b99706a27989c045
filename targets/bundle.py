"""The model bundle: the four steps every target serves through the same code.

``load`` the trained model, ``preprocess`` a request, ``predict``, ``postprocess``
the output, plus ``example_requests`` for parity checks and load. Every target calls
:func:`serve_batch`, so a difference in the numbers is the deployment's, never the
model code's.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from targets.errors import BundleError

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class Prediction:
    """One example's answer: the class and the probability of every class."""

    label: int
    probabilities: tuple[float, ...]


class Bundle(Protocol):
    """What a model bundle provides. Built-ins live in :mod:`targets.bundles`."""

    name: str
    description: str
    #: Shape of one example, without the batch dimension.
    input_shape: tuple[int, ...]
    #: Wire encoding the served targets use unless told otherwise: "json" or "binary".
    default_encoding: str

    def prepare(self) -> None:
        """Make the trained artefacts exist (train and cache at first use). Idempotent."""

    def load(self) -> None:
        """Load the trained model into memory, ready to predict."""

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """Turn a validated float32 batch of shape ``(B, *input_shape)`` into model input."""

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run the model; called under ``torch.inference_mode()``."""

    def postprocess(self, outputs: torch.Tensor) -> list[Prediction]:
        """Turn model output into one :class:`Prediction` per example."""

    def example_requests(self) -> list[np.ndarray]:
        """Fixed, deterministic requests, each a float32 array ``(1, *input_shape)``."""

    def info(self) -> dict[str, Any]:
        """Facts for the report: accuracy, parameters, checksum, where preprocessing runs."""


BUILTIN_BUNDLES: dict[str, str] = {
    "digits": "targets.bundles.digits:DigitsBundle",
    "vision": "targets.bundles.vision:VisionBundle",
}


def get_bundle(name: str) -> Bundle:
    """Return a fresh, not yet loaded, built-in bundle by name."""
    try:
        ref = BUILTIN_BUNDLES[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_BUNDLES))
        raise BundleError(f"unknown bundle ({name!r}). Choose one of: {known}") from None
    module_name, _, class_name = ref.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    bundle: Bundle = cls()
    return bundle


def serve_batch(bundle: Bundle, batch: np.ndarray) -> list[Prediction]:
    """The one code path every target uses: preprocess, predict, postprocess."""
    import torch

    with torch.inference_mode():
        return bundle.postprocess(bundle.predict(bundle.preprocess(batch)))


def softmax_predictions(logits: torch.Tensor) -> list[Prediction]:
    """Postprocessing shared by the built-in classifiers: softmax, argmax per row.

    Done in numpy on the float32 logits: for a handful of classes that costs a few
    microseconds, where each torch call costs several.
    """
    import numpy as np

    values = logits.detach().numpy().astype(np.float32, copy=False)
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    labels = probs.argmax(axis=1).tolist()
    return [Prediction(int(label), tuple(row))
            for label, row in zip(labels, probs.tolist(), strict=True)]

"""The model bundle: the four steps every target serves through the same code.

``load`` the trained model, ``preprocess`` a request, ``predict``, ``postprocess``
the output, plus ``example_requests`` for parity checks and load. Every target calls
:func:`serve_batch`, so a difference in the numbers is the deployment's, never the
model code's.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from targets.errors import RequestError

if TYPE_CHECKING:
    import numpy as np
    import torch


#: The wire encodings of a request body (:mod:`targets.wire.codec` speaks each); a bundle's
#: ``default_encoding`` is one of them.
ENCODINGS = ("json", "binary")


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
    # Optional, not a protocol member: ``uses_torch = False`` tells serve_batch that the
    # bundle never touches torch (the null bundle), so it skips torch.inference_mode().

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
    "null": "targets.bundles.null:NullBundle",
}


#: Probabilities may differ by float32 rounding between processes and thread counts;
#: anything beyond this is a different computation.
PARITY_TOLERANCE = 1e-5


def compare_predictions(expected: list[Prediction], got: list[Prediction],
                        tolerance: float = PARITY_TOLERANCE) -> tuple[str | None, float]:
    """``(None, largest probability difference)`` when ``got`` matches ``expected``;
    otherwise ``(what differs, ...)``, worded to follow "target X ...".
    """
    if len(got) != len(expected):
        return f"returned {len(got)} predictions, in-process {len(expected)}", 0.0
    worst = 0.0
    for want, have in zip(expected, got, strict=True):
        if want.label != have.label:
            return f"predicts class {have.label}, in-process predicts {want.label}", worst
        if len(want.probabilities) != len(have.probabilities):
            return (f"returns {len(have.probabilities)} probabilities, in-process "
                    f"{len(want.probabilities)}"), worst
        diff = max(abs(a - b) for a, b in zip(want.probabilities, have.probabilities,
                                              strict=True))
        if not math.isfinite(diff):  # NaN compares False with everything: catch it first
            return "returns a probability that is not a finite number", worst
        worst = max(worst, diff)
        if diff > tolerance:
            return f"differs by {diff:.2e} in a probability (tolerance {tolerance:.0e})", worst
    return None, worst


def serve_batch(bundle: Bundle, batch: np.ndarray) -> list[Prediction]:
    """The one code path every target uses: preprocess, predict, postprocess. Raises
    RequestError (400) where the model's output is not finite.

    Under ``torch.inference_mode()``, except for a bundle that sets ``uses_torch = False``
    (the ``null`` calibration bundle): its path neither imports nor runs torch.
    """
    if not getattr(bundle, "uses_torch", True):
        return _finite(bundle.postprocess(bundle.predict(bundle.preprocess(batch))))
    import torch

    with torch.inference_mode():
        return _finite(bundle.postprocess(bundle.predict(bundle.preprocess(batch))))


def _finite(predictions: list[Prediction]) -> list[Prediction]:
    """Predictions whose probabilities are all numbers. Finite inputs near float32's
    largest overflow a model to infinity and NaN, which no JSON can carry: the input is
    outside what the model computes, a client error (400) rather than a NaN answer."""
    for p in predictions:
        # A finite sum says every term is (the usual case, in one call); an infinite one
        # may be an overflow of the sum alone, so then each term is looked at.
        if not math.isfinite(sum(p.probabilities)) \
                and not all(math.isfinite(x) for x in p.probabilities):
            raise RequestError(400, "the model's output is not finite for this input (NaN "
                                    "or infinity): its values are too large for the model")
    return predictions


def softmax_predictions(outputs: torch.Tensor) -> list[Prediction]:
    """Logits of shape ``(batch, classes)`` to one Prediction per row: softmax and argmax
    in numpy on the float32 logits (for a handful of classes a few microseconds, where
    each torch call costs several)."""
    values = outputs.detach().numpy().astype(np.float32, copy=False)
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    labels = probs.argmax(axis=1).tolist()
    return [Prediction(int(label), tuple(row))
            for label, row in zip(labels, probs.tolist(), strict=True)]


class TorchClassifier:
    """What the built-in bundles share: a torch module, and softmax postprocessing.

    Subclasses set the class attributes, build ``self._net`` in ``load()`` and write
    ``prepare``, ``preprocess`` and ``example_requests``.
    """

    name: str
    description: str
    input_shape: tuple[int, ...]
    default_encoding: str
    classes: int
    preprocessing: str

    def __init__(self) -> None:
        self._net: torch.nn.Module | None = None

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        assert self._net is not None, "call load() first"
        out: torch.Tensor = self._net(inputs)
        return out

    def postprocess(self, outputs: torch.Tensor) -> list[Prediction]:
        return softmax_predictions(outputs)

    def weights_sha256(self) -> str | None:
        """The SHA-256 of the loaded module's state (each entry's name, dtype, shape and
        bytes, in order), for a bundle whose weights are no file (``vision``'s come from a
        seed): a history then sees when the model changed. None before ``load()``.

        Not part of ``info()``: a server reads ``info()`` at start-up (the prediction
        log's model version), and hashing ``vision``'s 45 MB (~30 ms) there would add to
        the cold start it measures. The harness asks for it once per run."""
        import torch

        if self._net is None:
            return None
        digest = hashlib.sha256()
        for key, value in self._net.state_dict().items():
            digest.update(f"{key}:{value.dtype}:{tuple(value.shape)}".encode())
            # As bytes whatever the dtype (numpy has no bfloat16): flat, then uint8.
            raw = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
            digest.update(raw.numpy().tobytes())
        return digest.hexdigest()

    def info(self) -> dict[str, Any]:
        net = self._net
        return {
            "name": self.name,
            "description": self.description,
            "input_shape": list(self.input_shape),
            "classes": self.classes,
            "parameters": sum(p.numel() for p in net.parameters()) if net is not None else None,
            "preprocessing": self.preprocessing,
            "accuracy": None,
            "sha256": None,
        }


def recorded_info(bundle: Any) -> dict[str, Any]:
    """The bundle's facts as run.json records them: ``info()``, with the weights' SHA-256
    from the loaded module where ``info()`` has none and the bundle can give it (a seeded
    model has no weights file): `compare` and a suite's history tell two models apart by
    it."""
    info = dict(bundle.info())
    digest = getattr(bundle, "weights_sha256", None)
    if info.get("sha256") is None and callable(digest):
        # A state it cannot read as bytes (quantized, sparse) stays unhashed, as before:
        # a checksum is worth no lost run.
        with contextlib.suppress(Exception):
            info["sha256"] = digest()
    return info

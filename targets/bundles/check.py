"""Check a bundle in the orchestrator before any server starts, and say what is wrong
and where.

Every step of the interface is called on the bundle's own example requests, each on its
own so a failure names the step (``predict() failed on example 0 of shape (1, 63):
RuntimeError: mat1 and mat2 shapes cannot be multiplied ... (at my_bundle.py:41)``), and
the answers are checked the way the targets and the parity check will use them:

* the examples: a non-empty list of float32 arrays of shape ``(1, *input_shape)``;
* postprocess's answer: a list of :class:`~targets.bundles.protocol.Prediction`, one per example
  in the batch, each an integer label and finite probabilities;
* a batch of two examples answers two predictions (servers accept batches);
* determinism, twice: the same examples asked again of the same loaded bundle (dropout
  left on, say), and of a second, freshly loaded instance (weights initialised at random
  without a seed: every server process would hold a different model). Either breaks the
  parity check between deployments, so either is refused here, with the difference.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from targets.bundles.protocol import PARITY_TOLERANCE, Prediction, compare_predictions
from targets.bundles.resolve import get_bundle
from targets.bundles.user import describe_error, is_user_spec, user_bundle
from targets.errors import BundleError

if TYPE_CHECKING:
    import numpy as np

    from targets.bundles.protocol import Bundle


@dataclass
class CheckedBundle:
    """A loaded bundle that passed, its examples and their predictions (the reference
    every deployment's answers are compared with)."""

    bundle: Bundle
    examples: list[np.ndarray]
    reference: list[list[Prediction]]
    #: Seconds the check took (prepare, two loads, three passes over the examples).
    seconds: float


def _folder(bundle: Any) -> Path | None:
    """Where the user's code lives, to point errors at its lines."""
    for attr in ("source", "handler_path", "model_path"):
        path = getattr(bundle, attr, None)
        if isinstance(path, Path):
            return path.parent
    return None


class _Checker:
    def __init__(self, spec: str, bundle: Any) -> None:
        self.spec = spec
        self.bundle = bundle
        self.name = getattr(bundle, "name", spec)
        self.folder = _folder(bundle)

    def fail(self, text: str) -> BundleError:
        return BundleError(f"bundle {self.name}: {text}")

    def call(self, step: str, fn: Callable[..., Any], *args: Any, on: str = "") -> Any:
        try:
            return fn(*args)
        except BundleError as exc:
            raise self.fail(f"{step}() failed{on}: {exc}") from exc
        except Exception as exc:
            raise self.fail(f"{step}() failed{on}: "
                            f"{describe_error(exc, self.folder)}") from exc

    def examples(self) -> list[np.ndarray]:
        examples = self.call("example_requests", self.bundle.example_requests)
        if not isinstance(examples, list | tuple) or not examples:
            raise self.fail(f"example_requests() must return a non-empty list of arrays "
                            f"(got {type(examples).__name__})")
        want = (1, *self.bundle.input_shape)
        for i, ex in enumerate(examples):
            if not isinstance(ex, np.ndarray) or ex.dtype != np.float32:
                kind = ex.dtype if isinstance(ex, np.ndarray) else type(ex).__name__
                raise self.fail(f"example_requests()[{i}] must be a float32 numpy array "
                                f"(got {kind})")
            if ex.shape != want:
                raise self.fail(f"example_requests()[{i}] has shape {ex.shape}; input_shape "
                                f"{tuple(self.bundle.input_shape)} means {want} (a batch of "
                                "one)")
        return list(examples)

    def serve(self, batch: np.ndarray, on: str) -> list[Prediction]:
        """preprocess, predict, postprocess as serve_batch runs them, each step named."""
        context: Any = contextlib.nullcontext()
        if getattr(self.bundle, "uses_torch", True):
            import torch

            context = torch.inference_mode()
        with context:
            inputs = self.call("preprocess", self.bundle.preprocess, batch, on=on)
            outputs = self.call("predict", self.bundle.predict, inputs, on=on)
            predictions = self.call("postprocess", self.bundle.postprocess, outputs, on=on)
        return self.predictions(predictions, len(batch), on)

    def predictions(self, got: Any, batch: int, on: str) -> list[Prediction]:
        if not isinstance(got, list) or not all(isinstance(p, Prediction) for p in got):
            kind = type(got).__name__
            if isinstance(got, list) and got:
                kind = f"a list of {type(got[0]).__name__}"
            raise self.fail(f"postprocess(){on} returned {kind}; it must return a list of "
                            "targets.bundles.protocol.Prediction(label, probabilities), one per "
                            "example in the batch")
        if len(got) != batch:
            raise self.fail(f"postprocess(){on} returned {len(got)} predictions for a batch "
                            f"of {batch}: the batch dimension is lost or added somewhere")
        for p in got:
            if isinstance(p.label, bool) or not isinstance(p.label, int):
                raise self.fail(f"postprocess(){on}: a Prediction's label must be an int "
                                f"(got {type(p.label).__name__})")
            probabilities = p.probabilities
            if not isinstance(probabilities, tuple) or not all(
                    isinstance(x, float) for x in probabilities):
                raise self.fail(f"postprocess(){on}: a Prediction's probabilities must be a "
                                "tuple of Python floats (e.g. tuple(row.tolist()))")
            if not all(math.isfinite(x) for x in probabilities):
                raise self.fail(f"postprocess(){on}: a probability is not finite (NaN or "
                                "infinity) on the bundle's own example")
        return got


def check_bundle(spec: str, progress: Callable[[str], None] | None = None,
                 max_batch: int = 2) -> CheckedBundle:
    """Prepare, load and exercise the bundle ``spec``; raise BundleError naming the
    problem and where it is, or return the loaded bundle with its reference answers.
    ``max_batch`` is the largest batch the servers will accept (``--max-batch``): with 1,
    batches are not tried."""
    say = progress or (lambda text: None)
    started = time.perf_counter()
    bundle = get_bundle(spec)
    check = _Checker(spec, bundle)
    say(f"checking bundle {check.name}: prepare, load, predict its examples")
    check.call("prepare", bundle.prepare)
    check.call("load", bundle.load)
    examples = check.examples()
    reference = [check.serve(ex, f" on example {i} of shape {ex.shape}")
                 for i, ex in enumerate(examples)]
    if max_batch > 1:
        pair = np.concatenate([examples[0], examples[-1]])
        try:
            check.serve(pair, f" on a batch of 2 examples (shape {pair.shape})")
        except BundleError as exc:
            if "postprocess()" in str(exc):
                raise
            raise BundleError(f"{exc}. Servers accept batches up to --max-batch: make the "
                              "batch dimension dynamic (torch.export: dynamic_shapes), or "
                              "run with --max-batch 1") from exc

    def agree(answers: list[list[Prediction]], how: str, hint: str) -> None:
        for i, (want, got) in enumerate(zip(reference, answers, strict=True)):
            problem, _ = compare_predictions(want, got, PARITY_TOLERANCE)
            if problem is not None:
                problem = problem.replace("in-process", "the first time")
                raise check.fail(f"is not deterministic: example {i} {how} {problem}. "
                                 f"{hint}; otherwise no deployment can be checked against "
                                 "another")

    again = [check.serve(ex, f" on example {i}") for i, ex in enumerate(examples)]
    agree(again, "asked a second time",
          "Put the model in eval() mode (dropout, batch norm) and avoid random numbers in "
          "preprocess/predict/postprocess")
    # Imported anew, as each server process, worker and Lambda environment will: weights
    # made at random at import time, without a seed, differ here too.
    fresh = user_bundle(spec, fresh=True) if is_user_spec(spec) else get_bundle(spec)
    second = _Checker(spec, fresh)
    second.call("load", fresh.load, on=" (a second instance)")
    agree([second.serve(ex, f" on example {i} (a second instance)")
           for i, ex in enumerate(examples)],
          "in a second, freshly loaded instance",
          "Seed any random initialisation (at import or in load()) or load the weights "
          "from a file")
    return CheckedBundle(bundle, examples, reference, time.perf_counter() - started)

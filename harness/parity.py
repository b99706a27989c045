"""Parity: every deployment must answer exactly what the model answers in-process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import UserError
from harness.results import ParityResult
from targets.bundles.protocol import compare_predictions

if TYPE_CHECKING:
    import numpy as np

    from targets.base import Target
    from targets.bundles.protocol import Prediction


class ParityError(UserError):
    """A target's predictions differ from in-process ones."""


def parity_message(target: str, index: int, problem: str) -> str:
    return (f"parity: {target} {problem} on example {index}. The deployment does not serve "
            f"the model the orchestrator loaded: check its bundle, encoding and versions "
            f"(see its log)")


def check_parity(target: Target, examples: list[np.ndarray],
                 reference: list[list[Prediction]]) -> ParityResult:
    """Ask ``target`` for every example; raise naming the first one that differs."""
    worst = 0.0
    for index, (example, expected) in enumerate(zip(examples, reference, strict=True)):
        problem, diff = compare_predictions(expected, target.predict(example))
        if problem is not None:
            raise ParityError(parity_message(target.name, index, problem))
        worst = max(worst, diff)
    return {"ok": True, "examples": len(examples), "max_abs_diff": worst,
            "reference": "the bundle called in the orchestrator's process"}

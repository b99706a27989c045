"""Parity: every deployment must answer exactly what the model answers in-process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import UserError
from harness.results import ParityResult

if TYPE_CHECKING:
    import numpy as np

    from targets.base import Target
    from targets.bundle import Prediction

#: Probabilities may differ by float32 rounding between processes and thread counts;
#: anything beyond this is a different computation.
TOLERANCE = 1e-5


class ParityError(UserError):
    """A target's predictions differ from in-process ones."""


def check_parity(target: Target, examples: list[np.ndarray],
                 reference: list[list[Prediction]], reference_name: str = "inprocess"
                 ) -> ParityResult:
    """Ask ``target`` for every example; raise naming the first one that differs."""
    worst = 0.0
    for index, (example, expected) in enumerate(zip(examples, reference, strict=True)):
        got = target.predict(example)
        if len(got) != len(expected):
            raise ParityError(
                f"parity: {target.name} returned {len(got)} predictions for example {index}, "
                f"in-process {len(expected)}"
            )
        for want, have in zip(expected, got, strict=True):
            if want.label != have.label:
                raise ParityError(
                    f"parity: {target.name} predicts class {have.label} for example {index}, "
                    f"in-process predicts {want.label}"
                )
            if len(want.probabilities) != len(have.probabilities):
                raise ParityError(
                    f"parity: {target.name} returns {len(have.probabilities)} probabilities "
                    f"for example {index}, in-process {len(want.probabilities)}"
                )
            diff = max(abs(a - b) for a, b in zip(want.probabilities, have.probabilities,
                                                  strict=True))
            if diff > TOLERANCE:
                raise ParityError(
                    f"parity: {target.name} differs from in-process on example {index}: "
                    f"probabilities differ by {diff:.2e} (tolerance {TOLERANCE:.0e})"
                )
            worst = max(worst, diff)
    return {"ok": True, "examples": len(examples), "max_abs_diff": worst,
            "reference": reference_name}

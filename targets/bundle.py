"""The names a bundle file imports: ``from targets.bundle import Prediction``.

``deploybench init-bundle`` writes bundle files that import from here, and users' bundles
do, so this name stays. The definitions live in :mod:`targets.bundles.protocol`.
"""

from targets.bundles.protocol import (
    BUILTIN_BUNDLES,
    PARITY_TOLERANCE,
    Bundle,
    Prediction,
    TorchClassifier,
    compare_predictions,
    serve_batch,
    softmax_predictions,
)

__all__ = ["BUILTIN_BUNDLES", "PARITY_TOLERANCE", "Bundle", "Prediction", "TorchClassifier",
           "compare_predictions", "serve_batch", "softmax_predictions"]

"""``python -m targets.inprocess BUNDLE``: a fresh process loads the bundle and predicts
once, the in-process target's cold start (timed whole by its parent)."""

from __future__ import annotations

import sys

import numpy as np

from targets.bundles.protocol import serve_batch
from targets.bundles.resolve import get_bundle


def main(bundle_name: str) -> None:
    bundle = get_bundle(bundle_name)
    bundle.load()
    # A fixed input, not example_requests(): building those (e.g. reading scikit-learn's
    # data set for digits) is the benchmark's work, not the application's.
    serve_batch(bundle, np.zeros((1, *bundle.input_shape), dtype=np.float32))


if __name__ == "__main__":
    main(sys.argv[1])

"""``digits``: a small MLP on scikit-learn's 8x8 digits, trained at first use.

Overhead-dominated on purpose: a forward pass costs tens of microseconds, so what the
report shows for this bundle is the cost of each way of serving it. The data set ships
with scikit-learn (no download). Training is seeded and single-threaded, so it is
deterministic on a given machine; the weights are cached with their SHA-256 and checked
at every load.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from targets.bundles.protocol import TorchClassifier
from targets.errors import BundleError
from targets.files import atomic_write_bytes, atomic_write_json, cache_dir, sha256_file

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Bump when the model, the split or the training changes: the cache key includes it.
VERSION = 1
SEED = 20261127
TEST_FRACTION = 0.2
EPOCHS = 60
BATCH_SIZE = 32
HIDDEN = (128, 64)
#: The issue's bar for a model worth serving; training that misses it is an error.
MIN_ACCURACY = 0.95
N_EXAMPLES = 64


def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype(np.float32)  # pixel intensities 0..16, 64 per image
    y = data.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(x))
    n_test = int(len(x) * TEST_FRACTION)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _build_net() -> torch.nn.Module:
    from torch import nn

    layers: list[nn.Module] = []
    width = 64
    for hidden in HIDDEN:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


class DigitsBundle(TorchClassifier):
    name = "digits"
    description = "MLP 64-128-64-10 on scikit-learn's 8x8 digits (overhead-dominated)"
    input_shape: tuple[int, ...] = (64,)
    default_encoding = "json"
    classes = 10
    preprocessing = "server side: scale 0..16 pixels to 0..1, standardise per pixel"

    def __init__(self, directory: Path | None = None) -> None:
        super().__init__()
        self.directory = directory or cache_dir() / f"digits-v{VERSION}"
        self._scale: np.ndarray | None = None
        self._shift: np.ndarray | None = None
        self._meta: dict[str, Any] = {}

    @property
    def weights_path(self) -> Path:
        return self.directory / "model.pt"

    @property
    def meta_path(self) -> Path:
        return self.directory / "meta.json"

    # -- training -----------------------------------------------------------------
    def prepare(self) -> None:
        if self._cache_ok():
            return
        self._train()

    def _cache_ok(self) -> bool:
        if not (self.weights_path.exists() and self.meta_path.exists()):
            return False
        meta = json.loads(self.meta_path.read_text())
        actual = sha256_file(self.weights_path)
        if meta.get("sha256") != actual:
            log.warning(
                "digits cache at %s fails its checksum (%s != %s); retraining",
                self.directory, actual, meta.get("sha256"),
            )
            return False
        return True

    def _train(self) -> None:
        import torch

        x_train, y_train, x_test, y_test = _split()
        scaled = x_train / 16.0
        mean = scaled.mean(axis=0)
        # Border pixels are always 0 in this data set: keep their scale finite.
        std = scaled.std(axis=0) + 1e-3
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(1)  # one thread: same float summation order every time
        try:
            torch.manual_seed(SEED)
            net = _build_net()
            optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
            inputs = torch.from_numpy((scaled - mean) / std)
            targets = torch.from_numpy(y_train)
            generator = torch.Generator().manual_seed(SEED)
            for _ in range(EPOCHS):
                order = torch.randperm(len(inputs), generator=generator)
                for start in range(0, len(order), BATCH_SIZE):
                    idx = order[start : start + BATCH_SIZE]
                    optimiser.zero_grad()
                    loss = torch.nn.functional.cross_entropy(net(inputs[idx]), targets[idx])
                    loss.backward()  # type: ignore[no-untyped-call]
                    optimiser.step()
            net.eval()
            with torch.inference_mode():
                test_in = torch.from_numpy(((x_test / 16.0) - mean) / std)
                accuracy = float((net(test_in).argmax(1).numpy() == y_test).mean())
        finally:
            torch.set_num_threads(previous_threads)
        if accuracy < MIN_ACCURACY:
            raise BundleError(
                f"digits model reached only {accuracy:.1%} held-out accuracy "
                f"(needs {MIN_ACCURACY:.0%}). The training recipe in {__file__} is broken."
            )
        buffer = io.BytesIO()
        torch.save(
            {"state_dict": net.state_dict(), "mean": torch.from_numpy(mean),
             "std": torch.from_numpy(std)},
            buffer,
        )
        atomic_write_bytes(self.weights_path, buffer.getvalue())
        meta = {
            "version": VERSION,
            "seed": SEED,
            "sha256": sha256_file(self.weights_path),
            "accuracy": accuracy,
            "train_examples": len(x_train),
            "test_examples": len(x_test),
            "torch": torch.__version__,
        }
        atomic_write_json(self.meta_path, meta)
        log.info("trained digits model: %.2f%% held-out accuracy", accuracy * 100)

    # -- serving ------------------------------------------------------------------
    def load(self) -> None:
        import torch

        self.prepare()
        checkpoint = torch.load(self.weights_path, weights_only=True)
        net = _build_net()
        net.load_state_dict(checkpoint["state_dict"])
        net.eval()
        self._net = net
        # (x / 16 - mean) / std folded into one multiply-add: one numpy pass per request.
        mean = checkpoint["mean"].numpy().astype(np.float32)
        std = checkpoint["std"].numpy().astype(np.float32)
        self._scale = (1.0 / (16.0 * std)).astype(np.float32)
        self._shift = (-mean / std).astype(np.float32)
        self._meta = json.loads(self.meta_path.read_text())

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        import torch

        assert self._scale is not None, "call load() first"
        assert self._shift is not None
        return torch.from_numpy(batch * self._scale + self._shift)

    def example_requests(self) -> list[np.ndarray]:
        _, _, x_test, _ = _split()
        return [x_test[i : i + 1].copy() for i in range(N_EXAMPLES)]

    # -- the drift check (deploybench drift) ------------------------------------------
    def drift_features(self, batch: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Every pixel, named by its row and column in the 8x8 image."""
        names = [f"px[{r},{c}]" for r in range(8) for c in range(8)]
        return names, batch.reshape(len(batch), 64)

    def drift_reference_inputs(self) -> tuple[str, Iterable[np.ndarray]]:
        """What the reference is computed from: the training split, as the model saw it."""
        x_train, _, _, _ = _split()
        return (f"the training split ({len(x_train)} images; seed {SEED}, "
                f"{1 - TEST_FRACTION:.0%} of scikit-learn's digits)", [x_train])

    def info(self) -> dict[str, Any]:
        return {**super().info(), "accuracy": self._meta.get("accuracy"),
                "sha256": self._meta.get("sha256"), "examples": N_EXAMPLES}

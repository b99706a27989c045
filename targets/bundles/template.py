"""A deploybench bundle: your model, served the same way by every deployment.

Written by ``deploybench init-bundle NAME``. As written it is a working example (a small
classifier of scikit-learn's iris flowers, trained at first use); replace the model and
the four steps with yours, keep the names. Try it:

    deploybench run --bundle ./NAME.py --targets inprocess,flask --scenario smoke

deploybench imports this file in its own process, in every server process, in every
Lambda environment and in containers (its folder is mounted read-only at the same path),
so keep it importable on its own: files it needs belong next to it. Before any server
starts, deploybench loads the bundle, runs your example requests through it twice and in
a second instance, and refuses it with the step and line at fault if it fails, answers in
the wrong form or is not deterministic (every deployment is checked against it).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from targets.bundles.protocol import Prediction, softmax_predictions

HERE = Path(__file__).resolve().parent
SEED = 7


def _build_net() -> torch.nn.Module:
    """The network. Yours could be anything torch runs, or torch.jit.load(...) of a file."""
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def _data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris  # ships with scikit-learn: no download

    data = load_iris()
    return data.data.astype(np.float32), data.target.astype(np.int64)


class Bundle:
    #: Shown in reports and used for result folders.
    name = "template"
    description = "example: a 4-16-3 MLP on scikit-learn's iris flowers"
    #: One example's shape, without the batch dimension. Requests are float32 batches
    #: of shape (B, *input_shape), as JSON lists or raw little-endian bytes.
    input_shape = (4,)
    #: How served targets send requests unless `run --encoding` says otherwise:
    #: "json" (lists of numbers) or "binary" (raw float32, better for large inputs).
    default_encoding = "json"

    def __init__(self) -> None:
        self.weights = HERE / f"{Path(__file__).stem}.weights.pt"
        self.net: torch.nn.Module | None = None
        self.mean = np.zeros(4, dtype=np.float32)
        self.std = np.ones(4, dtype=np.float32)

    def prepare(self) -> None:
        """Optional. Make the trained artefacts exist; called once in deploybench's own
        process before anything is served (and again, harmlessly, by each server)."""
        if self.weights.exists():
            return
        x, y = _data()
        torch.manual_seed(SEED)  # seeded: the same model every time it is trained
        net = _build_net()
        mean, std = x.mean(axis=0), x.std(axis=0)
        inputs, targets = torch.from_numpy((x - mean) / std), torch.from_numpy(y)
        optimiser = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(200):
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(inputs), targets)
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
        fd, tmp = tempfile.mkstemp(dir=HERE, suffix=".tmp")  # written whole, then renamed
        os.close(fd)
        torch.save({"state_dict": net.state_dict(), "mean": torch.from_numpy(mean),
                    "std": torch.from_numpy(std)}, tmp)
        os.replace(tmp, self.weights)

    def load(self) -> None:
        """Load the trained model into memory. Must give the same model every time: no
        unseeded random initialisation."""
        checkpoint = torch.load(self.weights, weights_only=True)
        net = _build_net()
        net.load_state_dict(checkpoint["state_dict"])
        net.eval()  # no dropout, batch norm in inference mode: deterministic answers
        self.net = net
        self.mean = checkpoint["mean"].numpy()
        self.std = checkpoint["std"].numpy()

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """A validated float32 array of shape (B, *input_shape) to the model's input."""
        return torch.from_numpy((batch - self.mean) / self.std)

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model; deploybench calls it under torch.inference_mode()."""
        assert self.net is not None, "call load() first"
        out: torch.Tensor = self.net(inputs)
        return out

    def postprocess(self, outputs: torch.Tensor) -> list[Prediction]:
        """One Prediction(label, probabilities) per example in the batch. For logits of
        shape (B, classes), softmax_predictions does it."""
        return softmax_predictions(outputs)

    def example_requests(self) -> list[np.ndarray]:
        """Fixed requests, each float32 of shape (1, *input_shape): the load sends them
        and every deployment's answers to them are compared with this process's."""
        x, _ = _data()
        return [x[i : i + 1].copy() for i in range(0, len(x), 10)]

    def drift_features(self, batch: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Optional. What `deploybench drift` compares between logged and training inputs:
        names and a matrix (examples, features). Without it: every value when an example
        holds at most 256, else each channel's mean and standard deviation."""
        names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        return names, batch.reshape(len(batch), 4)

    def drift_reference_inputs(self) -> tuple[str, list[np.ndarray]]:
        """Optional. The training inputs `deploybench drift --write-reference` computes the
        reference from: a description and batches of shape (B, *input_shape)."""
        x, _ = _data()
        return f"iris ({len(x)} flowers)", [x]

    def info(self) -> dict[str, Any]:
        """Optional. Facts for the report; "sha256" of the weights lets `deploybench
        compare` warn when two runs served different models."""
        return {"classes": 3, "preprocessing": "server side: standardise 4 measurements",
                "sha256": hashlib.sha256(self.weights.read_bytes()).hexdigest()}

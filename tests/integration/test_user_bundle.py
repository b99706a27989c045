"""Your own model, served by every target exactly as the built-ins are: a bundle module
(the init-bundle template) and a TorchScript model with a handler, each through a real
run with parity checked against the orchestrator's own answers, and a redeploy of each
timed on every target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reports.schema import load_run

pytestmark = pytest.mark.integration

EVERY_TARGET = "inprocess,flask,grpc,lambda"
#: One redeploy, then one short closed-loop stage: enough for parity and a handful of
#: measured requests.
TINY = """
description: one short stage, for tests
concurrency: [2]
warmup_s: 0.3
window_s: 0.5
stability_windows: 1
max_windows: 2
cooldown_s: 0.1
drain_timeout_s: 10
redeploys: 1
"""


def run(tmp_path: Path, *args: str, timeout: float = 300) -> dict:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(TINY)
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--scenario", str(scenario), "--out",
         str(out), *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_run(out)


def check_served(run_doc: dict, targets: str, examples: int) -> None:
    assert [t["name"] for t in run_doc["targets"]] == targets.split(",")
    for target in run_doc["targets"]:
        assert target["status"] == "ok", target["error"]
        assert target["parity"]["ok"], target["parity"]
        assert target["parity"]["examples"] == examples
        assert target["stages"][0]["rps"] > 0
        assert target["stages"][0]["errors"] == 0
        # The new model version's time to its first good prediction, on every target.
        redeploy = target["redeploys"]
        assert redeploy["supported"]
        assert redeploy["samples"][0]["total_s"] > 0


def test_a_bundle_module_served_by_every_target(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "harness", "init-bundle", "flowers", "--dir",
                    str(tmp_path)], check=True, capture_output=True)
    doc = run(tmp_path, "--targets", EVERY_TARGET, "--bundle", str(tmp_path / "flowers.py"))
    check_served(doc, EVERY_TARGET, 15)
    assert doc["metadata"]["bundle"] == "flowers"
    assert doc["bundle"]["user_bundle"]
    assert doc["bundle"]["source"].endswith("flowers.py")
    assert "flowers" in (tmp_path / "run" / "report.md").read_text()


HANDLER = '''
import numpy as np
import torch

INPUT_SHAPE = (1, 8, 8)

def preprocess(batch):
    return torch.from_numpy(batch / 16.0)

def example_requests():
    rng = np.random.default_rng(5)
    return [rng.integers(0, 17, (1, 1, 8, 8)).astype(np.float32) for _ in range(6)]
'''


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated")
def test_a_torchscript_model_served_by_every_target(tmp_path: Path) -> None:
    torch.manual_seed(11)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 6 * 6, 10)).eval()
    models, handlers = tmp_path / "models", tmp_path / "code"
    models.mkdir()
    handlers.mkdir()
    torch.jit.save(torch.jit.script(net), str(models / "cnn.pt"))
    (handlers / "cnn_handler.py").write_text(HANDLER)
    doc = run(tmp_path, "--targets", EVERY_TARGET, "--model", str(models / "cnn.pt"),
              "--handler", str(handlers / "cnn_handler.py"), "--encoding", "binary")
    check_served(doc, EVERY_TARGET, 6)
    assert doc["bundle"]["model_format"] == "torchscript"
    assert doc["metadata"]["bundle"] == "cnn"

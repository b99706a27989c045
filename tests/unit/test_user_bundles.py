"""Your own bundle: a bundle module or a saved model, and the check that refuses a broken
one with what is wrong and where, before anything is served."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from harness.cli import main
from targets.bundles.check import check_bundle
from targets.bundles.protocol import serve_batch
from targets.bundles.resolve import get_bundle
from targets.bundles.user import (
    container_view,
    label,
    model_spec,
    mount_dirs,
    parse_model_spec,
    parse_shape,
    where,
)
from targets.errors import BundleError

# A small, correct bundle module; each broken case below edits one thing in it.
GOOD = '''
import numpy as np
import torch
from targets.bundles.protocol import softmax_predictions


class Bundle:
    name = "tiny"
    input_shape = (4,)

    def load(self):
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5),
                                       torch.nn.Linear(8, 3))
        self.net.eval()

    def preprocess(self, batch):
        return torch.from_numpy(batch)

    def predict(self, inputs):
        return self.net(inputs)

    def postprocess(self, outputs):
        return softmax_predictions(outputs)

    def example_requests(self):
        rng = np.random.default_rng(1)
        return [rng.standard_normal((1, 4)).astype(np.float32) for _ in range(5)]
'''


def write(tmp_path: Path, source: str, name: str = "tiny.py") -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def edit(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


def test_a_bundle_module_is_checked_and_served(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    checked = check_bundle(str(path))
    assert checked.bundle.name == "tiny"
    assert len(checked.reference) == 5
    info = checked.bundle.info()
    assert info["source"] == str(path)
    assert info["user_bundle"]
    # get_bundle gives the same answers: what every target calls.
    again = get_bundle(str(path))
    again.load()
    assert serve_batch(again, checked.examples[2]) == checked.reference[2]


def test_make_bundle_factory_and_defaults(tmp_path: Path) -> None:
    source = GOOD.replace("class Bundle:", "class Mine:") + "\ndef make_bundle():\n" \
        "    return Mine()\n"
    bundle = get_bundle(str(write(tmp_path, source, "factory.py")))
    assert bundle.default_encoding == "json"
    assert bundle.description.startswith("user bundle")
    bundle.prepare()  # a default that does nothing


BROKEN = [
    ("import error", GOOD.replace("import numpy as np", "import numpy as np\nimport nosuchpkg"),
     r"failed to import: ModuleNotFoundError: No module named 'nosuchpkg' \(at .*tiny\.py:3\)"),
    ("syntax error", GOOD.replace("def load(self):", "def load(self)"),
     r"failed to import: SyntaxError: .* \(at .*tiny\.py:\d+\)"),
    ("no bundle", GOOD.replace("class Bundle:", "class Other:"),
     r"defines neither make_bundle\(\) nor a class Bundle"),
    ("missing member", edit("    def predict(self, inputs):\n        return self.net(inputs)\n",
                            ""),
     r"Bundle lacks predict"),
    ("bad input_shape", edit("input_shape = (4,)", "input_shape = (4.5,)"),
     r"input_shape must be a tuple of positive whole numbers"),
    ("shape mismatch", edit("input_shape = (4,)", "input_shape = (5,)").replace(
        "(1, 4)", "(1, 5)"),
     r"predict\(\) failed on example 0 of shape \(1, 5\): RuntimeError: mat1 and mat2 "
     r"shapes cannot be multiplied.*\(at .*tiny\.py:\d+\)"),
    ("examples of the wrong shape", edit("(1, 4)).astype", "(4,)).astype"),
     r"example_requests\(\)\[0\] has shape \(4,\); input_shape \(4,\) means \(1, 4\)"),
    ("examples of the wrong dtype", edit(".astype(np.float32)", ""),
     r"example_requests\(\)\[0\] must be a float32 numpy array \(got float64\)"),
    ("wrong output type", edit("return softmax_predictions(outputs)", "return outputs"),
     r"postprocess\(\) on example 0 of shape \(1, 4\) returned Tensor; it must return a list "
     r"of targets.bundles.protocol.Prediction"),
    ("wrong output items", edit("return softmax_predictions(outputs)",
                                "return [int(x) for x in outputs.argmax(1)]"),
     r"returned a list of int"),
    ("batch lost", edit("return softmax_predictions(outputs)",
                        "return softmax_predictions(outputs)[:1]"),
     r"returned 1 predictions for a batch of 2: the batch dimension is lost"),
    ("raises in preprocess", edit("return torch.from_numpy(batch)",
                                  "raise ValueError('no scaler fitted')"),
     r"preprocess\(\) failed on example 0 of shape \(1, 4\): ValueError: no scaler fitted "
     r"\(at .*tiny\.py:\d+\)"),
    ("dropout left on", edit("self.net.eval()", "self.net.train()"),
     r"is not deterministic: example \d+ asked a second time .*eval\(\) mode"),
    ("unseeded weights", edit("torch.manual_seed(0)",
                              "torch.manual_seed(np.random.randint(1 << 30))"),
     r"is not deterministic: example 0 in a second, freshly loaded instance .*Seed"),
    ("load raises", edit("torch.manual_seed(0)", "open('weights-that-are-not-there.pt')"),
     r"load\(\) failed: FileNotFoundError: .*weights-that-are-not-there\.pt.*\(at .*tiny\.py"),
]


BROKEN += [
    # Made at import, without a seed: each server process would hold other weights.
    ("unseeded weights at import", edit("class Bundle:", "NET = torch.nn.Linear(4, 3)\n\n\n"
                                        "class Bundle:").replace(
        "return self.net(inputs)", "return NET(inputs)"),
     r"is not deterministic: example 0 in a second, freshly loaded instance .*at import"),
]


@pytest.mark.parametrize(("case", "source", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_bundle_says_what_and_where(tmp_path: Path, case: str, source: str,
                                             message: str) -> None:
    path = write(tmp_path, source)
    with pytest.raises(BundleError) as caught:
        check_bundle(str(path))
    assert re.search(message, str(caught.value)), str(caught.value)


def test_errors_point_at_the_bundle_not_at_torch_in_a_venv_beside_it(tmp_path: Path
                                                                    ) -> None:
    """A bundle in a project folder that also holds the venv (here: "/", which holds
    everything): the line named is the bundle's, not torch's or deploybench's."""
    path = write(tmp_path, GOOD)
    bundle = get_bundle(str(path))
    bundle.load()
    with pytest.raises(RuntimeError) as caught:
        bundle.predict(torch.zeros(1, 5))
    line = GOOD.splitlines().index("        return self.net(inputs)") + 1
    assert where(caught.value, Path("/")) == f"{path}:{line}"


def test_a_broken_bundle_is_refused_before_anything_starts(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    path = write(tmp_path, edit("self.net.eval()", "self.net.train()"))
    out = tmp_path / "results"
    code = main(["run", "--bundle", str(path), "--targets", "flask", "--out", str(out),
                 "--scenario", "smoke"])
    assert code != 0
    assert "is not deterministic" in capsys.readouterr().err
    assert not out.exists()  # refused before the result folder, so before any server


#: TorchScript is deprecated in this torch, and still what many models ship as.
scripting = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated")


def _net() -> torch.nn.Module:
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(),
                               torch.nn.Linear(5, 4)).eval()


@scripting
def test_a_torchscript_model_without_handler(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(_net()), str(path))
    checked = check_bundle(model_spec(path, None, (6,)))
    info = checked.bundle.info()
    assert info["model_format"] == "torchscript"
    assert info["parameters"] == 6 * 5 + 5 + 5 * 4 + 4
    assert checked.bundle.name == "scripted"
    with torch.inference_mode():
        want = _net()(torch.from_numpy(checked.examples[0])).argmax(1).item()
    assert checked.reference[0][0].label == want


def test_an_exported_model_with_a_handler(tmp_path: Path) -> None:
    path = tmp_path / "exported.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(_net(), (torch.zeros(2, 6),),
                                  dynamic_shapes={"input": {0: batch}})
    torch.export.save(program, str(path))
    handler = write(tmp_path, '''
import numpy as np
import torch
from targets.bundles.protocol import Prediction

INPUT_SHAPE = (6,)
NAME = "exported-with-handler"

def preprocess(batch):
    return torch.from_numpy(batch * 2.0)

def postprocess(outputs):
    return [Prediction(int(row.argmax()), tuple(float(x) for x in row.tolist()))
            for row in outputs]

def example_requests():
    return [np.full((1, 6), i, dtype=np.float32) for i in range(3)]
''', "handler.py")
    checked = check_bundle(model_spec(path, handler))
    assert checked.bundle.name == "exported-with-handler"
    assert checked.bundle.info()["model_format"] == "torch.export"
    assert len(checked.reference) == 3
    with torch.inference_mode():
        logits = _net()(torch.full((1, 6), 2.0))  # example 1, doubled by preprocess
    assert checked.reference[1][0].probabilities == pytest.approx(
        tuple(logits[0].tolist()), abs=1e-5)


def test_an_exported_model_with_a_fixed_batch_says_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "fixed.pt2"
    torch.export.save(torch.export.export(_net(), (torch.zeros(1, 6),)), str(path))
    spec = model_spec(path, None, (6,))
    with pytest.raises(BundleError, match=r"batch of 2 examples.*dynamic_shapes.*"
                                          r"--max-batch 1"):
        check_bundle(spec)
    check_bundle(spec, max_batch=1)  # servers that take one example at a time: fine


@scripting
@pytest.mark.parametrize(("setup", "message"), [
    ("state_dict", r"neither a TorchScript archive .* nor a torch.export archive"),
    ("missing", r"no such file"),
    ("no shape", r"the shape of one example is unknown: give --input-shape"),
    ("3-d output", r"output has shape \(1, 2, 2\); without a handler's postprocess"),
])
def test_a_broken_model_says_what(tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "model.pt"
    shape: tuple[int, ...] | None = (6,)
    if setup == "state_dict":
        torch.save(_net().state_dict(), str(path))
    elif setup == "no shape":
        torch.jit.save(torch.jit.script(_net()), str(path))
        shape = None
    elif setup == "3-d output":
        class Reshape(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x[:, :4].reshape(-1, 2, 2)

        torch.jit.save(torch.jit.script(Reshape()), str(path))
    with pytest.raises(BundleError, match=message):
        check_bundle(model_spec(path, None, shape))


def test_containers_see_the_bundle_at_their_own_paths(tmp_path: Path) -> None:
    model, handler = tmp_path / "m" / "net.pt2", tmp_path / "code" / "h.py"
    spec, mounts = container_view(model_spec(model, handler, (3, 8, 8)))
    assert mounts == {tmp_path / "code": "/deploybench/user/0",
                      tmp_path / "m": "/deploybench/user/1"}
    inside = parse_model_spec(spec)
    assert inside.model == Path("/deploybench/user/1/net.pt2")
    assert inside.handler == Path("/deploybench/user/0/h.py")
    assert inside.input_shape == (3, 8, 8)
    spec, mounts = container_view(str(tmp_path / "b.py"))
    assert spec == "/deploybench/user/0/b.py"
    assert mounts == {tmp_path: "/deploybench/user/0"}
    assert container_view("digits") == ("digits", {})


def test_specs_travel_as_one_string(tmp_path: Path) -> None:
    model, handler = tmp_path / "a b&c.pt", tmp_path / "sub" / "h.py"
    spec = model_spec(model, handler, (3, 8, 8))
    parsed = parse_model_spec(spec)
    assert (parsed.model, parsed.handler, parsed.input_shape) == (model, handler, (3, 8, 8))
    assert label(spec) == "a b&c"
    assert mount_dirs(spec) == sorted([tmp_path, tmp_path / "sub"])
    assert label(str(tmp_path / "mine.py")) == "mine"
    assert mount_dirs("digits") == []
    assert label("digits") == "digits"
    assert parse_shape("3x224x224") == parse_shape("3,224,224") == (3, 224, 224)
    with pytest.raises(BundleError, match="positive sizes"):
        parse_shape("3x0")


def test_a_saved_model_given_as_bundle_points_to_model(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="give it with --model"):
        get_bundle(str(tmp_path / "m.pt"))
    with pytest.raises(BundleError, match="no such file"):
        get_bundle(str(tmp_path / "absent.py"))


def test_init_bundle_writes_a_working_template(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init-bundle", "flowers", "--dir", str(tmp_path)]) == 0
    path = tmp_path / "flowers.py"
    assert "deploybench run --bundle" in capsys.readouterr().out
    text = path.read_text()
    assert 'name = "flowers"' in text
    assert "flowers.py" in text
    checked = check_bundle(str(path))
    assert checked.bundle.name == "flowers"
    # Trained once, seeded: it classifies iris well (the template is a real example).

    data = load_iris()
    batch = data.data.astype(np.float32)
    predictions = serve_batch(checked.bundle, batch)
    accuracy = np.mean([p.label for p in predictions] == data.target)
    assert accuracy > 0.9
    # Never overwritten; names must be identifiers.
    assert main(["init-bundle", "flowers", "--dir", str(tmp_path)]) != 0
    assert main(["init-bundle", "not-a-name", "--dir", str(tmp_path)]) != 0
    assert "exists" in capsys.readouterr().err

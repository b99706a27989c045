"""`deploybench drift` end to end on prediction logs written by PredictionLog."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from harness.cli import main
from harness.drift import EXIT_DRIFT
from targets.bundles.digits import _split
from targets.bundles.protocol import Prediction
from targets.bundles.vision import VisionBundle
from targets.predlog import PredictionLog

ROOT = Path(__file__).resolve().parents[2]
ANSWER = [Prediction(0, (1.0,))]
#: px[3,4] in digits' flat 64-pixel row.
PX_3_4 = 3 * 8 + 4


def write_log(directory: Path, rows: np.ndarray, bundle: str = "digits") -> Path:
    log = PredictionLog(directory, 1.0, bundle, f"{bundle}@0123456789ab", synchronous=True)
    try:
        for i in range(0, len(rows), 3):  # requests of up to 3 examples, as a load sends
            batch = rows[i : i + 3]
            log.record(batch, ANSWER * len(batch))
    finally:
        log.close()
    return directory


@pytest.fixture(scope="module")
def test_images() -> np.ndarray:
    """Digits' held-out split: the same population as the training reference."""
    return _split()[2]


def test_an_unshifted_log_passes(tmp_path: Path, test_images: np.ndarray,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = write_log(tmp_path / "digits-predictions", test_images)
    assert main(["drift", str(log_dir)]) == 0
    out, err = capsys.readouterr()
    assert "0 of 64 features moved" in out
    assert f"{len(test_images)} logged examples" in out
    assert "warning" not in err


def test_a_shifted_pixel_is_flagged_and_the_exit_code_says_drift(
        tmp_path: Path, test_images: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    shifted = test_images.copy()
    shifted[:, PX_3_4] = np.minimum(shifted[:, PX_3_4] + 8, 16)  # still on the 0..16 scale
    log_dir = write_log(tmp_path / "log", shifted)
    assert main(["drift", str(log_dir)]) == EXIT_DRIFT
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[2].startswith("px[3,4]")
    assert lines[2].endswith("moved")
    assert "1 of 64 features moved (PSI >= 0.25): px[3,4]" in out

    assert main(["drift", str(log_dir), "--json"]) == EXIT_DRIFT
    doc = json.loads(capsys.readouterr().out)
    assert doc["moved"] == ["px[3,4]"]
    assert doc["trustworthy"] is True
    first = doc["features"][0]
    assert first["name"] == "px[3,4]"
    assert first["psi"] >= 0.25
    assert first["p_value"] < 1e-6
    assert first["logged_mean"] > first["reference_mean"] + 3
    assert len(doc["features"]) == 64  # --json holds every feature, whatever --top

    # A threshold above the shift's PSI lets it pass.
    assert main(["drift", str(log_dir), "--psi-threshold", "100"]) == 0


def test_few_examples_warn_that_the_result_is_not_trustworthy(
        tmp_path: Path, test_images: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = write_log(tmp_path / "log", np.concatenate([test_images[:40]] * 4))
    main(["drift", str(log_dir), "--top", "3"])
    out, err = capsys.readouterr()
    assert "only 40 distinct examples logged (160 in all" in err
    assert "not trustworthy" in err
    assert "of 64 features moved" in out  # still printed
    assert "... 61 more" in out


def test_the_command_runs_as_deploybench(tmp_path: Path, test_images: np.ndarray) -> None:
    log_dir = write_log(tmp_path / "log", test_images[:150])
    done = subprocess.run([sys.executable, "-m", "harness", "drift", str(log_dir), "--json"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bundle"] == "digits"


@pytest.mark.parametrize(("setup", "message"), [
    ("missing", "no prediction log folder"),
    ("no-databases", "was the target run with --log-predictions"),
    ("empty", "is empty"),
    ("corrupt", "cannot read the prediction log"),
])
def test_an_unusable_log_dir_is_a_clear_error(tmp_path: Path, setup: str, message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = tmp_path / "log"
    if setup != "missing":
        log_dir.mkdir()
    if setup == "empty":
        PredictionLog(log_dir, 1.0, "digits", "digits", synchronous=True).close()
    if setup == "corrupt":  # a database file that is not one (a copy cut short, say)
        (log_dir / "predictions-1.sqlite").write_bytes(b"not a database" * 100)
    assert main(["drift", str(log_dir)]) == 1
    assert message in capsys.readouterr().err


def test_a_log_of_another_bundle_is_refused(tmp_path: Path, test_images: np.ndarray,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = write_log(tmp_path / "log", test_images[:10])
    assert main(["drift", str(log_dir), "--bundle", "null"]) == 1
    assert "the log is of bundle 'digits', not 'null'" in capsys.readouterr().err


def test_a_bundle_without_reference_says_what_to_pass(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle_file = tmp_path / "tiny.py"
    bundle_file.write_text(
        "import numpy as np\n"
        "class Bundle:\n"
        "    name = 'tiny'\n"
        "    input_shape = (3,)\n"
        "    def load(self): pass\n"
        "    def preprocess(self, b): return b\n"
        "    def predict(self, x): return x\n"
        "    def postprocess(self, y): return []\n"
        "    def example_requests(self):\n"
        "        return [np.full((1, 3), i, dtype=np.float32) for i in range(5)]\n")
    rng = np.random.default_rng(0)
    log_dir = write_log(tmp_path / "log", rng.normal(size=(200, 3)).astype(np.float32),
                        bundle="tiny")
    assert main(["drift", str(log_dir)]) == 1  # not a built-in: which file is it?
    assert "--bundle path/to/bundle.py" in capsys.readouterr().err
    assert main(["drift", str(log_dir), "--bundle", str(bundle_file)]) == 1
    assert "ships no drift reference: pass --reference-inputs" in capsys.readouterr().err

    training = tmp_path / "train.npy"
    np.save(training, rng.normal(size=(1000, 3)).astype(np.float32))
    assert main(["drift", str(log_dir), "--bundle", str(bundle_file),
                 "--reference-inputs", str(training)]) == 0
    assert "0 of 3 features moved" in capsys.readouterr().out

    # Its own reference file, written once and passed on.
    ref = tmp_path / "tiny-reference.json"
    assert main(["drift", "--write-reference", str(bundle_file), "--reference-inputs",
                 str(training), "--out", str(ref)]) == 0
    capsys.readouterr()
    assert main(["drift", str(log_dir), "--bundle", str(bundle_file),
                 "--reference", str(ref)]) == 0

    # Its example requests: few, and said so; values 0..4 against N(0, 1) moved.
    assert main(["drift", str(log_dir), "--bundle", str(bundle_file),
                 "--reference", "examples"]) == EXIT_DRIFT
    assert "the reference is the bundle's 5 example requests" in capsys.readouterr().err

    np.save(training, np.zeros((10, 4), dtype=np.float32))
    assert main(["drift", str(log_dir), "--bundle", str(bundle_file),
                 "--reference-inputs", str(training)]) == 1
    assert "(N, 3)" in capsys.readouterr().err


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["drift"]) == 1
    assert "name the prediction log's folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["drift", str(tmp_path), "--top", "-1"])
    assert info.value.code == 2


def test_the_template_bundle_names_its_features_and_writes_its_reference(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A user bundle's own drift_features() and drift_reference_inputs() (the template's)."""
    assert main(["init-bundle", "iris", "--dir", str(tmp_path)]) == 0
    bundle_file = tmp_path / "iris.py"
    ref = tmp_path / "iris-reference.json"
    assert main(["drift", "--write-reference", str(bundle_file), "--out", str(ref)]) == 0
    assert "4 features of iris from iris (150 flowers)" in capsys.readouterr().out
    flowers = load_iris().data.astype(np.float32)
    flowers[:, 2] += 2.0  # petal length, in cm
    log_dir = write_log(tmp_path / "log", flowers, bundle="iris")
    assert main(["drift", str(log_dir), "--bundle", str(bundle_file), "--reference",
                 str(ref)]) == EXIT_DRIFT
    out = capsys.readouterr().out
    assert "1 of 4 features moved (PSI >= 0.25): petal_length" in out


def test_non_finite_logged_inputs_are_a_clear_error(
        tmp_path: Path, test_images: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    rows = test_images[:120].copy()
    rows[5, 0] = np.nan
    log_dir = write_log(tmp_path / "log", rows)
    assert main(["drift", str(log_dir)]) == 1
    assert "not finite" in capsys.readouterr().err


def test_a_vision_log_is_checked_on_its_summary_features(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = np.concatenate(VisionBundle().example_requests())
    log_dir = write_log(tmp_path / "log", images, bundle="vision")
    main(["drift", str(log_dir), "--json"])
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert len(doc["features"]) == 22
    assert {f["name"] for f in doc["features"]} >= {"R.mean", "B.std", "bright[3,3]"}
    assert doc["trustworthy"] is False
    assert "only 8 distinct examples" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["drift", "LOG", "--write-reference", "digits"], "checks no log"),
    (["drift", "LOG", "--out", "x.json"], "checking a log writes nothing"),
    (["drift", "LOG", "--reference", "examples", "--reference-inputs", "x.npy"],
     "give one reference"),
    (["drift", "LOG", "--psi-threshold", "0"], "must be a positive number"),
])
def test_conflicting_options_are_refused(argv: list[str], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_a_log_of_another_shape_is_refused(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    log_dir = write_log(tmp_path / "log", np.zeros((5, 4), dtype=np.float32))  # not 64
    assert main(["drift", str(log_dir)]) == 1
    assert "holds examples of shape (4,), bundle digits takes (64,)" in capsys.readouterr().err

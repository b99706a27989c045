"""The decision report rendered from a fixed, real result file (four deployments of
`digits` measured by `make demo` on the 2-core CI machine class): content, not existence."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from harness.cli import main
from reports.charts import CHARTS

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "runs" / "digits-4targets.json"
PNG = b"\x89PNG\r\n\x1a\n"


def fixture() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(FIXTURE.read_text())
    return doc


def render(tmp_path: Path, doc: dict[str, Any], *options: str) -> str:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "run.json").write_text(json.dumps(doc))
    assert main(["report", str(tmp_path), *options]) == 0
    return (tmp_path / "report.md").read_text()


def test_the_decision_comes_first_with_its_numbers(tmp_path: Path) -> None:
    md = render(tmp_path, fixture())
    sections = re.findall(r"^## (.+)$", md, flags=re.MULTILINE)
    assert sections[0] == "Decision"
    assert not any(word in md for word in ("SIMULATED", "Simulated figures"))  # a real run
    assert "Objective: p99 <= 100 ms, the default" in md
    assert "10 million requests a month, the default" in md
    # At 10 million requests a month, pay-per-request is cheapest and meets p99 <= 100 ms.
    assert "Recommended: **lambda**" in md
    assert "**grpc** meets it but costs more: $36.04 a month" in md
    assert "is cheaper than inprocess, flask and grpc (always on) below 158 million" in md
    # Every target has a row in the table, with cold start, memory and cost.
    for name in ("inprocess", "flask", "grpc", "lambda"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} | yes |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(c not in ("", "-") for c in cells[2:]), row
    assert "| grpc | yes | 3,058 ± 112 |" in md


def test_the_recommendation_follows_the_objective(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    md = render(tmp_path, fixture(), "--slo", "p99=1ms")
    assert "Objective: p99 <= 1 ms, as given" in md
    assert "Recommended: **grpc**" in md
    assert "**lambda** does not meet p99 <= 1 ms: its lowest p99 over VALID stages was " \
        "1.26 ms, at 1 user" in md
    # grpc meets it at 1 user, not at the common load, and the report says which.
    assert "(at 1 user, p99 0.857 ms, errors 0.00%; goodput 1,513 req/s answered within " \
        "1 ms) per instance" in md
    assert "p99 2.50 ± 0.277 ms at 4 concurrent users, above the objective" in md
    # A pay-per-request deployment that misses the objective has no break-even line.
    assert "Cost: lambda" not in md
    assert "run.json unchanged" in capsys.readouterr().out
    # And with the traffic: at a billion a month an always-on server is cheaper.
    md = render(tmp_path, fixture(), "--monthly-requests", "1B")
    assert "Recommended: **grpc**" in md
    assert "**lambda** meets it but costs more: $228.81 a month" in md


def coloured_pixels(png: bytes) -> int:
    """Pixels in colour (lines, bars, markers), not the white, grey or black of an empty
    frame with its axes, grid and labels."""
    rgb = matplotlib.image.imread(io.BytesIO(png))[..., :3]
    return int(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.25).sum())


def test_every_chart_is_drawn_and_referenced(tmp_path: Path) -> None:
    render(tmp_path, fixture())
    md = (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    inlined = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(inlined) == len(CHARTS)
    empty = fixture()
    for t in empty["targets"]:
        t.update(status="failed", error="made up", stages=[])
        t.pop("cold_starts")
    render(tmp_path / "empty", empty)
    nothing = tmp_path / "empty" / "charts"
    for name in CHARTS:
        png = (tmp_path / "charts" / f"{name}.png").read_bytes()
        assert png.startswith(PNG)
        assert f"](charts/{name}.png)" in md
        # Data drawn: far more colour than the same chart of a run where every target failed.
        drawn, blank = coloured_pixels(png), coloured_pixels((nothing / f"{name}.png").read_bytes())
        assert drawn > max(3000, 3 * blank), (name, drawn, blank)


def test_questions_and_caveats_are_answered(tmp_path: Path) -> None:
    md = render(tmp_path, fixture())
    assert "## Questions to ask before choosing" in md
    assert "| lambda | 1,154 | 0.812 at 1 user | no: AWS Lambda is a cloud service" in md
    assert "same on 64 examples" in md
    assert "Preprocessing runs server side: scale 0..16 pixels" in md
    assert "lambda meets the objective warm. A cold start takes 1,003 ms" in md
    assert "CPU pinning: the deployment ran on CPUs 1, the load generator on CPUs 0" in md
    # Where the time goes: encoding and transport beside the in-process model time. This
    # run predates the load users' decoding of answers: its encoding slice is the server's
    # decode and encode only (0.005 + 0.003 ms), not the client's steps it never did.
    assert "| grpc | 1 user | 0.194 | 0.008 | 0.408 | 0.678 | 0.610 | 1.29 |" in md


def test_invalid_stages_are_marked_in_the_decision(tmp_path: Path) -> None:
    md = render(tmp_path, fixture())
    # inprocess at 4 users (the common load) was unstable: marked, and listed with reasons.
    assert "| inprocess | yes | 5,615 ± 606 | 0.669† | 5.09 ± 11.3† |" in md
    assert "**inprocess** at 4 users: unstable" in md


def test_a_failed_target_is_reported_and_the_rest_decided(tmp_path: Path) -> None:
    doc = fixture()
    grpc = next(t for t in doc["targets"] if t["name"] == "grpc")
    grpc.update(status="failed", error="grpc server exited with code 3", stages=[])
    md = render(tmp_path, doc)
    assert "**grpc** failed: grpc server exited with code 3" in md
    assert "| grpc | failed |" in md
    assert "Recommended: **lambda**" in md


def test_a_single_target_is_decided_alone(tmp_path: Path) -> None:
    doc = fixture()
    doc["targets"] = [copy.deepcopy(t) for t in doc["targets"] if t["name"] == "flask"]
    md = render(tmp_path, doc, "--monthly-requests", "1B")
    assert "Recommended: **flask**" in md
    assert "Latencies are compared at 4 concurrent users" in md
    assert "Cost: " not in md  # nothing to break even against


def test_prices_given_to_report_change_every_cost(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text('as_of: "test"\nlambda_request: 0.000002\n'
                      "container_vcpu_hour: {x86_64: 0.08096}\n")
    md = render(tmp_path / "run", fixture(), "--prices", str(prices))
    # $2 per million requests on top of the same billed GB-s ($0.029 per million).
    assert "| lambda | yes |" in md
    assert "$2.03 per million" in md
    # The vCPU-hour doubled: (0.08096 + 2 x 0.004445) x 730 h.
    assert "$65.59 a month at 10 million requests (1 always-on instance" in md
    assert "prices of test" in md


def test_a_run_where_every_target_failed_says_why(tmp_path: Path) -> None:
    doc = fixture()
    for t in doc["targets"]:
        t.update(status="failed", error=f"{t['name']} exited with code 3", stages=[])
    md = render(tmp_path, doc)
    assert "**No deployment met p99 <= 100 ms.**" in md
    assert "**grpc** failed: grpc exited with code 3" in md


def test_redeploys_are_tabled_and_answer_the_question(tmp_path: Path) -> None:
    doc = fixture()
    kinds = {"inprocess": ("reload in the running process", [0.0021, 0.0025]),
             "flask": ("new server beside the old", [1.31, 1.42]),
             "grpc": ("new server beside the old", [1.40])}
    for t in doc["targets"]:
        if t["name"] in kinds:
            kind, seconds = kinds[t["name"]]
            ms = sorted(s * 1000 for s in seconds)
            t["redeploys"] = {"supported": True, "kind": kind, "error": None,
                              "definition": f"timed: {kind}",
                              "samples": [{"total_s": s} for s in seconds],
                              "total_ms": {"p50": ms[0], "max": ms[-1]}}
        elif t["name"] == "lambda":  # the new version never answered: kept, and said
            t["redeploys"] = {"supported": True, "kind": None, "samples": [],
                              "total_ms": None, "definition": None,
                              "error": "redeploy 1 of 1 failed: no healthy answer"}
    md = render(tmp_path, doc)
    redeploys = md.split("## Redeploys", 1)[1].split("\n## ", 1)[0]
    assert "| inprocess | 2 | 2.10 | 2.50 | reload in the running process |" in redeploys
    assert "| flask | 2 | 1,310 | 1,420 | new server beside the old |" in redeploys
    assert "redeploy 1 of 1 failed: no healthy answer" in redeploys
    questions = md.split("## Questions to ask before choosing", 1)[1]
    assert "2.10 ms (p50 of 2 redeploys: reload in the running process)" in questions
    assert "1.31 s (p50 of 2 redeploys: new server beside the old)" in questions
    assert "1.40 s (p50 of 1 redeploy: new server beside the old)" in questions


def test_always_on_costs_show_their_rates_source_and_date(tmp_path: Path) -> None:
    md = render(tmp_path, fixture())
    # The $36.04 is 1 vCPU x $0.04048 + 2 GB x $0.004445 = $0.04937 an hour, x 730 hours.
    assert "**grpc** meets it but costs more: $36.04 a month at 10 million requests " \
        "(1 always-on instance of 1 vCPU, 2 GB at $0.0494 an hour, the always-on prices " \
        "under How these numbers were measured" in md
    method = md.split("## How these numbers were measured", 1)[1]
    line = next(x for x in method.splitlines() if x.startswith("- Always-on cost"))
    assert "prices as of 2026-11 (https://aws.amazon.com/fargate/pricing/" in line
    assert "x86_64 $0.04048 per vCPU-hour and $0.004445 per GB-hour" in line
    assert "arm64 $0.03238 per vCPU-hour and $0.00356 per GB-hour" in line
    assert "at least 2 GB per vCPU" in line
    assert "730 hours a month" in line
    # A run that recorded no always-on prices says the defaults stand in for them.
    doc = fixture()
    for key in [k for k in doc["prices"] if k.startswith("container")]:
        del doc["prices"][key]
    md = render(tmp_path / "old", doc)
    assert "(defaults: the run recorded none)" in md


def test_lambda_cold_start_says_what_aws_adds_apart_from_what_was_measured(
        tmp_path: Path) -> None:
    doc = fixture()
    lam = next(t for t in doc["targets"] if t["name"] == "lambda")
    measured = lam["cold_starts"]["total_ms"]["p50"]
    doc["metadata"]["lambda_platform_init_ms"] = 300.0
    md = render(tmp_path, doc)
    section = md.split("## Cold starts", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("| lambda |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # The measured p50 unchanged; the modelled share and the sum beside it.
    assert cells[2] == f"{measured:,.0f}"
    assert cells[5] == "300"
    assert cells[6] == f"{measured + 300:,.0f}"
    flask = next(line for line in section.splitlines() if line.startswith("| flask |"))
    assert flask.count("| - |") >= 2  # nothing modelled for a server
    assert "AWS first creates the execution environment (a Firecracker microVM)" in section
    assert "`--lambda-platform-init-ms`" in section
    assert "The image's lazy loading is not modelled" in section


def test_the_platform_share_option_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--targets", "lambda", "--lambda-platform-init-ms", "-5"])
    assert "expected a number >= 0" in capsys.readouterr().err

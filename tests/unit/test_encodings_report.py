"""The report's "Payload encodings" section, from run documents built by hand: what it
says, when it calls a difference a tie, and that single-encoding runs have none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.results import write_run
from reports import document, encodings, markdown
from reports.blocks import Chart, Heading
from reports.charts import render_all
from reports.compare import compare
from reports.render import render_run_dir
from reports.schema import RunDoc, StageResult, TargetResult
from tests.unit import runs

PNG = b"\x89PNG\r\n\x1a\n"


def result(name: str, deployment: str, wire: str | None, p50: list[float], rps: float = 800.0,
           request_bytes: int | None = None, codec_ms: float = 0.05) -> TargetResult:
    """A result at 1 and 4 users; ``p50`` are the 1-user stage's three kept windows."""
    def stage(users: int, scale: float) -> StageResult:
        windows = [(rps, v * scale, v * scale * 3) for v in p50]
        mid = sorted(p50)[1] * scale
        return runs.stage(users, rps, mid, mid * 3, windows=windows)

    t = runs.target(name, [stage(1, 1.0), stage(4, 4.0)])
    t["deployment"] = deployment
    t["encoding"] = wire
    codec: dict[str, Any] | None = None
    if wire is not None:
        codec = {**runs.codec(codec_ms, wire), "request_bytes": request_bytes}
    t["codec"] = codec
    return t


def flask_pair(binary_p50: list[float]) -> RunDoc:
    return runs.run([
        result("inprocess", "inprocess", None, [0.50, 0.51, 0.49]),
        result("flask-json", "flask", "json", [1.30, 1.31, 1.29], rps=700,
               request_bytes=1678, codec_ms=0.085),
        result("flask-binary", "flask", "binary", binary_p50, rps=700,
               request_bytes=542, codec_ms=0.020),
    ])


def markdown_of(run: RunDoc) -> str:
    blocks = document.build(run)
    paths = {b.name: f"charts/{b.name}.png" for b in blocks if isinstance(b, Chart)}
    return markdown.render(blocks, paths)


def test_section_compares_the_encodings_of_one_deployment() -> None:
    md = markdown_of(flask_pair([1.10, 1.11, 1.09]))
    assert "## Payload encodings" in md
    assert ("| flask-json | flask | JSON | 1,678 | 0.085 | 700 | 1.30 | 3.90 |" in md)
    assert ("| flask-binary | flask | binary | 542 | 0.020 | 700 | 1.10 | 3.30 |" in md)
    assert "req/s at 4 users" in md
    assert "p50 ms at 1 concurrent user" in md
    finding = next(line for line in md.splitlines() if line.startswith("- **flask**:"))
    assert "binary requests are 3.1x smaller than JSON (542 vs 1,678 bytes)" in finding
    # One run: the figures, their ratio and the windows' spread; no verdict.
    assert "p50 at 1 concurrent user is 1.10 ms against 1.30 for JSON (0.85x; one run: " \
           "windows spread binary ±0.9%, JSON ±0.8%; not tested, --trials 3 tests it)" in finding
    assert "encode+decode 0.020 vs 0.085 ms per request" in finding
    assert "throughput at 4 users is 1.00x JSON's (700 vs 700 req/s; one run:" in finding
    assert not any(word in finding for word in ("Welch", "ties", "lower than"))
    assert "](charts/encodings.png)" in md
    # In-process has no wire: not part of the comparison.
    section = md.split("## Payload encodings")[1].split("\n## ")[0]
    assert "inprocess" not in section


def with_trials(run: RunDoc, p50s: dict[str, list[float]]) -> RunDoc:
    """Each named result's 1-user stage repeated as trials with these p50s."""
    for t in run["targets"]:
        if t["name"] not in p50s:
            continue
        first = t["stages"][0]
        repeats = []
        for k, p50 in enumerate(p50s[t["name"]]):
            stage = runs.stage(1, first["rps"], p50, p50 * 3, windows=[(first["rps"], p50,
                                                                      p50 * 3)] * 3)
            stage["trial"] = k
            repeats.append(stage)
        t["stages"] = repeats + t["stages"][1:]
    run["metadata"]["trials"] = 3
    return run


def test_with_trials_a_difference_is_tested() -> None:
    apart = with_trials(flask_pair([1.10, 1.11, 1.09]),
                        {"flask-json": [1.30, 1.31, 1.29], "flask-binary": [1.10, 1.11, 1.09]})
    finding = next(line for line in markdown_of(apart).splitlines()
                   if line.startswith("- **flask**:"))
    assert "p50 is 0.200 ms lower than JSON at 1 concurrent user (1.10 vs 1.30 ms, " \
           "Welch p = " in finding
    close = with_trials(flask_pair([1.10, 1.11, 1.09]),
                        {"flask-json": [1.30, 1.45, 1.20], "flask-binary": [1.28, 1.20, 1.40]})
    finding = next(line for line in markdown_of(close).splitlines()
                   if line.startswith("- **flask**:"))
    assert "p50 ties with JSON at 1 concurrent user (1.28 vs 1.30 ms: a tie, Welch p = " \
        in finding


def test_http_binary_beside_grpc_protobuf() -> None:
    run = runs.run([
        result("flask", "flask", "binary", [1.10, 1.11, 1.09], request_bytes=542),
        result("grpc", "grpc", "protobuf", [0.90, 0.91, 0.89], request_bytes=263),
    ])
    md = markdown_of(run)
    assert "## Payload encodings" in md
    finding = next(line for line in md.splitlines() if line.startswith("- **grpc vs flask**:"))
    assert "protobuf requests are 2.1x smaller than flask's binary (263 vs 542 bytes)" \
        in finding
    assert "p50 at 1 concurrent user is 0.900 ms against 1.10 for flask's binary" in finding


def test_no_section_for_a_single_encoding() -> None:
    json_run = runs.run([
        result("inprocess", "inprocess", None, [0.50, 0.51, 0.49]),
        result("flask", "flask", "json", [1.30, 1.31, 1.29], request_bytes=1678),
        result("grpc", "grpc", "protobuf", [0.90, 0.91, 0.89], request_bytes=263),
        result("lambda", "lambda", "json", [3.0, 3.1, 2.9], request_bytes=1678),
    ])
    # A file from before --encodings: no deployment or encoding recorded.
    old = runs.run([runs.target("flask", [runs.stage(1, 700, 1.3, 3.9)]),
                    runs.target("grpc", [runs.stage(1, 900, 0.9, 2.7)])])
    for run in (json_run, old):
        assert not encodings.applies(run)
        assert encodings.blocks(run) == []
        assert not any(isinstance(b, Heading) and b.text == "Payload encodings"
                       for b in document.build(run))
        assert "encodings" not in render_all(run)
        assert "Payload encodings" not in markdown_of(run)


def test_a_failed_encoding_leaves_nothing_to_compare() -> None:
    run = flask_pair([1.10, 1.11, 1.09])
    failed = run["targets"][2]
    failed["status"], failed["error"], failed["stages"] = "failed", "made up", []
    assert not encodings.applies(run)


def test_rendered_files_have_the_section_and_its_chart(tmp_path: Path) -> None:
    write_run(tmp_path, flask_pair([1.10, 1.11, 1.09]))
    rendered = render_run_dir(tmp_path)
    assert "## Payload encodings" in rendered.markdown.read_text()
    html = rendered.html.read_text()
    assert "<h2>Payload encodings</h2>" in html
    assert "binary requests are 3.1x smaller than JSON" in html
    chart = tmp_path / "charts" / "encodings.png"
    assert chart.read_bytes().startswith(PNG)
    assert chart.stat().st_size > 5000


def test_compare_points_at_a_result_renamed_by_encodings() -> None:
    single = runs.run([result("flask", "flask", "json", [1.30, 1.31, 1.29])])
    several = flask_pair([1.10, 1.11, 1.09])
    notes = compare(single, several).notes
    assert "flask-json: only in B (A's flask is the same deployment and encoding: `run " \
           "--encodings` names results NAME-ENCODING, so compare runs made with the same " \
           "--encodings)" in notes
    assert "flask-binary: only in B" in notes  # nothing of that encoding in A
    # Same encodings on both sides: matched by name, compared.
    assert {c.target for c in compare(several, several).changes} >= {"flask-json",
                                                                     "flask-binary"}

"""The report's "Batching" section, from run documents built by hand: its tables, the
sentence per batched result (derived from the figures, hedged when a stage is INVALID),
its chart, and that the other sections treat ``NAME+batch`` as its own option."""

from __future__ import annotations

from pathlib import Path

from harness.results import write_run
from reports import batching, document, encodings, markdown
from reports.blocks import Chart
from reports.charts import render_all
from reports.compare import compare
from reports.render import render_run_dir
from reports.schema import RunDoc, StageResult, TargetResult
from tests.unit import runs

PNG = b"\x89PNG\r\n\x1a\n"
SPEC = "max_batch=16,max_wait_ms=2"


def result(name: str, stages: list[StageResult], batched: bool = False,
           wire: str = "json") -> TargetResult:
    t = runs.target("flask", stages)
    t["name"] = name
    t["deployment"] = "flask"
    t["encoding"] = wire
    t["batching"] = SPEC if batched else None
    return t


def flask_pair(valid: bool = True) -> RunDoc:
    """flask at 1 and 16 users; flask+batch: 2.1 ms slower at 1 user (batches of 1),
    1.8x the throughput and a 30% lower p99 at 16 users (batches of ~5)."""
    plain = result("flask", [runs.stage(1, 500.0, 1.9, 3.0), runs.stage(16, 1000.0, 15.0, 40.0)])
    batched = result("flask+batch", [
        runs.stage(1, 250.0, 4.0, 5.5, batch_sizes={1: 2250}),
        runs.stage(16, 1800.0, 8.0, 28.0, valid=valid,
                   batch_sizes={4: 1000, 5: 1000, 6: 1240})], batched=True)
    return runs.run([plain, batched])


def markdown_of(run: RunDoc) -> str:
    blocks = document.build(run)
    paths = {b.name: f"charts/{b.name}.png" for b in blocks if isinstance(b, Chart)}
    return markdown.render(blocks, paths)


def test_section_tabulates_each_load_without_and_with_batching() -> None:
    md = markdown_of(flask_pair())
    assert "## Batching" in md
    assert "### flask+batch" in md
    assert ("| load | req/s flask | req/s flask+batch | ratio | p50 ms flask | "
            "p50 ms flask+batch | ratio | p99 ms flask | p99 ms flask+batch | ratio | "
            "mean batch |") in md
    assert "| 1 user | 500 | 250 | 0.50x | 1.90 | 4.00 | 2.11x | 3.00 | 5.50 | 1.83x | 1.00 |" \
        in md
    # 3,240 passes serving 4,000 + 5,000 + 7,440 requests.
    assert ("| 16 users | 1,000 | 1,800 | 1.80x | 15.0 | 8.00 | 0.53x | 40.0 | 28.0 | 0.70x "
            "| 5.07 |") in md
    assert "](charts/batching.png)" in md


def test_the_sentence_comes_from_the_figures() -> None:
    [text] = [batching.finding(p) for p in batching.pairs(flask_pair())]
    assert text == (
        "**flask+batch** against flask: flask+batch serves 1.80x the requests of flask at "
        "16 users, p99 -30%, p50 -47% (mean batch 5.1); batching paid at 16 users; at 1 "
        "user it adds 2.10 ms to p50 (max_wait_ms=2), mean batch 1.0 (one run's figures, "
        "untested).")


def test_an_invalid_stage_hedges_the_sentence() -> None:
    md = markdown_of(flask_pair(valid=False))
    assert "| 16 users (INVALID) |" in md
    [text] = [batching.finding(p) for p in batching.pairs(flask_pair(valid=False))]
    assert text.endswith("Some of these stages are INVALID (marked in the table): read "
                         "them with care.")


def test_batching_that_never_pays_says_so() -> None:
    plain = result("flask", [runs.stage(4, 1000.0, 4.0, 9.0)])
    batched = result("flask+batch", [runs.stage(4, 990.0, 5.0, 9.5, batch_sizes={1: 8000,
                                                                                2: 455})],
                     batched=True)
    [text] = [batching.finding(p) for p in batching.pairs(runs.run([plain, batched]))]
    assert text.startswith("**flask+batch** against flask: batching did not pay at any load "
                           "measured (more throughput or a lower p99, with no higher p99, from "
                           "batches averaging 1.5 or more): throughput 0.99x to 0.99x flask's, "
                           "p99 never 5% lower, "
                           "mean batch 1.1 at most; at 4 users it adds 1.00 ms to p50")


def test_batched_only_has_nothing_to_compare() -> None:
    batched = result("flask+batch", [runs.stage(4, 990.0, 5.0, 9.5, batch_sizes={3: 10})],
                     batched=True)
    run = runs.run([batched])
    [text] = [batching.finding(p) for p in batching.pairs(run)]
    assert text == ("**flask+batch**: measured batched only (run with `--batching both`), "
                    "so there is nothing to compare with; mean batch size: 4 users 3.0.")
    failed = result("flask", [])
    failed["status"] = "failed"
    [text] = [batching.finding(p) for p in batching.pairs(runs.run([failed, batched]))]
    assert text.startswith("**flask+batch**: its unbatched result flask was not measured "
                           "(it failed), so there is nothing to compare with")
    assert "| 4 users | - | 990 | - |" in markdown_of(run)


def test_no_section_without_a_batched_result() -> None:
    run = runs.run([result("flask", [runs.stage(1, 500.0, 1.9, 3.0)])])
    assert not batching.applies(run)
    assert "## Batching" not in markdown_of(run)
    assert "batching" not in render_all(run)


def test_the_decision_treats_the_batched_result_as_its_own_option() -> None:
    md = markdown_of(flask_pair())
    questions = md.split("## Questions to ask before choosing")[1].split("\n## ")[0]
    assert "| flask |" in questions
    assert "| flask+batch |" in questions


def test_encodings_compare_batched_results_only_with_batched_ones() -> None:
    stages = [runs.stage(4, 1000.0, 4.0, 9.0)]
    batched = [runs.stage(4, 1000.0, 4.0, 9.0, batch_sizes={2: 10})]
    run = runs.run([result("flask-json", stages), result("flask-binary", stages, wire="binary"),
                    result("flask-json+batch", batched, batched=True),
                    result("flask-binary+batch", batched, batched=True, wire="binary")])
    assert [(p.subject, p.base["name"], p.other["name"]) for p in encodings.pairs(run)] == [
        ("flask", "flask-json", "flask-binary"),
        ("flask+batch", "flask-json+batch", "flask-binary+batch")]
    assert [(p.batched["name"], p.base and p.base["name"]) for p in batching.pairs(run)] == [
        ("flask-json+batch", "flask-json"), ("flask-binary+batch", "flask-binary")]


def test_rendered_files_have_the_section_and_its_chart(tmp_path: Path) -> None:
    run = flask_pair()
    write_run(tmp_path, run)
    rendered = render_run_dir(tmp_path, run)
    assert (tmp_path / "charts" / "batching.png").read_bytes().startswith(PNG)
    assert "## Batching" in rendered.markdown.read_text()
    assert "<h2>Batching</h2>" in rendered.html.read_text()


def test_compare_does_not_take_a_batched_result_for_a_renamed_one() -> None:
    plain = runs.run([result("flask-json", [runs.stage(4, 1000.0, 4.0, 9.0)])])
    batched = runs.run([result("flask+batch", [runs.stage(4, 1000.0, 4.0, 9.0,
                                                          batch_sizes={2: 10})],
                               batched=True)])
    notes = compare(plain, batched).notes
    assert "flask+batch: only in B" in notes
    assert not any("same deployment and encoding" in n for n in notes)


def test_more_threads_with_few_batches_is_named_as_the_cause() -> None:
    """flask+batch ran 16 gthread threads against flask's 1 and barely batched: the
    sentence says its gain is mostly those threads."""
    plain = result("flask", [runs.stage(16, 1000.0, 15.0, 40.0)])
    batched = result("flask+batch", [runs.stage(16, 1250.0, 12.0, 80.0,
                                                batch_sizes={1: 9000, 2: 500})], batched=True)
    plain["describe"]["threads_per_worker"] = 1
    batched["describe"]["threads_per_worker"] = 16
    [text] = [batching.finding(p) for p in batching.pairs(runs.run([plain, batched]))]
    # 1.25x the throughput, but from single passes and with p99 doubled: not "paid".
    assert text.startswith("**flask+batch** against flask: batching did not pay at any "
                           "load measured")
    assert ("flask+batch took up to 16 requests at once per worker against 1 (its threads: "
            "room for a batch's requests), and its mean batch stayed under 1.5: what changed "
            "is mostly that, not batching") in text
    # The same thread counts with real batches: the threads are named, not blamed.
    batched["stages"] = [runs.stage(16, 1800.0, 8.0, 28.0, batch_sizes={5: 1000})]
    [text] = [batching.finding(p) for p in batching.pairs(runs.run([plain, batched]))]
    assert "against 1 (its threads: room for a batch's requests) (one run's figures" in text


def test_grpc_against_http_binary_is_labelled_batched_when_both_are() -> None:
    stages = [runs.stage(4, 1000.0, 4.0, 9.0)]
    batched = [runs.stage(4, 1000.0, 4.0, 9.0, batch_sizes={2: 10})]
    grpc, grpc_batch = (result(n, s, batched=b, wire="protobuf")
                        for n, s, b in (("grpc", stages, False), ("grpc+batch", batched, True)))
    for t in (grpc, grpc_batch):
        t["deployment"] = "grpc"
    run = runs.run([result("flask", stages, wire="binary"),
                    result("flask+batch", batched, batched=True, wire="binary"),
                    grpc, grpc_batch])
    assert [(p.subject, p.base["name"], p.other["name"], p.base_label)
            for p in encodings.pairs(run)] == [
        ("grpc vs flask", "flask", "grpc", "flask's binary"),
        ("grpc+batch vs flask+batch", "flask+batch", "grpc+batch", "flask+batch's binary")]


def test_the_aio_server_is_not_said_to_hold_a_thread_per_request() -> None:
    plain = result("grpc", [runs.stage(16, 1000.0, 15.0, 40.0)])
    batched = result("grpc+batch", [runs.stage(16, 1000.0, 15.0, 40.0,
                                               batch_sizes={1: 9000})], batched=True)
    for t, threads in ((plain, 4), (batched, 16)):
        t["describe"]["threads_per_worker"] = threads
        t["describe"]["server"] = "grpc.aio server (asyncio) + health + reflection"
    [text] = [batching.finding(p) for p in batching.pairs(runs.run([plain, batched]))]
    assert "at once per worker" not in text


def test_a_gain_at_the_price_of_p99_is_not_paid() -> None:
    plain = result("flask", [runs.stage(16, 1000.0, 15.0, 40.0)])
    batched = result("flask+batch", [runs.stage(16, 1300.0, 12.0, 60.0,
                                                batch_sizes={4: 3000})], batched=True)
    [text] = [batching.finding(p) for p in batching.pairs(runs.run([plain, batched]))]
    assert "batching did not pay at any load measured" in text
    assert "throughput 1.30x to 1.30x flask's" in text

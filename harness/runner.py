"""The orchestrator: prepare the bundle, then for each target start it, check parity,
drive it through the scenario, stop it, and write what was measured.

``run.json`` is rewritten (atomically) after every target, so a run cut short keeps
everything measured before; its ``status`` says whether the run finished.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from harness import encodings, metadata, monitoring
from harness.breakdown import codec_cost
from harness.cpus import CpuPlan
from harness.encodings import Batching
from harness.errors import UserError
from harness.loadgen.analysis.batches import summarize_batches
from harness.loadgen.analysis.latency import summarize_latency
from harness.loadgen.analysis.serverless import summarize_invocations
from harness.loadgen.analysis.stats import summarize_stage
from harness.loadgen.analysis.targetmetrics import cross_check
from harness.loadgen.analysis.validity import Rules
from harness.loadgen.launch import LoadGenerator, LoadJob, LoadResult
from harness.parity import ParityError, check_parity
from harness.results import RunDoc, SampleWriter, StageResult, TargetResult, write_run
from reports.objective import sweep_p99_ms
from reports.runblocks import (
    BundleInfo,
    Calibration,
    ColdStarts,
    LoadgenInfo,
    Prices,
    Redeploys,
    ScenarioBlock,
    TargetDescription,
)
from reports.schema import SAMPLES_FILE, SCHEMA_VERSION
from scenarios.catalogue import Scenario
from targets import registry
from targets.batching import read_batch_log
from targets.bundles.check import CheckedBundle, check_bundle
from targets.bundles.protocol import compare_predictions, recorded_info
from targets.bundles.user import label
from targets.errors import TargetError
from targets.monitoring import OFF, Monitoring
from targets.runtimes.process import LOCAL
from targets.wire import codec

if TYPE_CHECKING:
    from targets.base import Target
    from targets.bundles.protocol import Bundle
    from targets.runtimes.container import DockerRuntime

#: The deployments `run` measures unless --targets says otherwise, in report order.
TARGETS = registry.BUILT_IN
#: Every deployment --targets accepts (TARGETS, and those measured only when named:
#: rayserve). "fake" is for tests of the runner.
RUNNABLE = registry.RUNNABLE
TEST_TARGETS = registry.FOR_TESTS


@dataclass(frozen=True)
class RunPlan:
    targets: tuple[str, ...]
    bundle: str
    scenario: Scenario
    cpus: CpuPlan
    out_dir: Path
    #: Wire encoding for served targets; None = the bundle's default.
    encoding: str | None = None
    #: --encodings: several, each HTTP-speaking target measured once per encoding as its
    #: own result NAME-ENCODING (harness.encodings); empty: one encoding, as ``encoding``.
    encodings: tuple[str, ...] = ()
    #: --batching: the batcher's settings for the deployments that can batch, each a
    #: result NAME+batch (and NAME unbatched too with ``both``); None: none batched.
    batching: Batching | None = None
    #: --metrics/--log-predictions (one mode: every result in it) or --monitoring (each
    #: target once per mode, results NAME+MODE; harness.monitoring); empty: off.
    monitoring: tuple[Monitoring, ...] = ()
    flask_workers: int | None = None
    flask_threads: int | None = None
    #: gunicorn's worker class for flask; None = the server's default (gthread).
    flask_worker_class: str | None = None
    fastapi_workers: int | None = None
    fastapi_threads: int | None = None
    #: Where fastapi runs the model ("executor", "anyio", "sync"); None = the default.
    fastapi_pool: str | None = None
    grpc_workers: int | None = None
    grpc_threads: int | None = None
    #: gRPC's Python API for the server ("sync" or "aio"); None = the server's default.
    grpc_api: str | None = None
    #: Ray Serve replicas, and the requests each takes at once; None: the server's default.
    rayserve_workers: int | None = None
    rayserve_threads: int | None = None
    lambda_memory_mb: int | None = None
    #: --lambda-memory-mb with two or more sizes: the lambda target measured once per
    #: size, each its own result lambda-MB (harness.encodings); empty: one size, as
    #: ``lambda_memory_mb``.
    lambda_memory_sizes: tuple[int, ...] = ()
    #: Environments at once; None = the scenario's highest concurrency, so the load is
    #: served (as Lambda's 1,000 default would) rather than throttled.
    lambda_concurrency: int | None = None
    lambda_timeout_s: float | None = None
    lambda_sandbox: str | None = None
    lambda_freeze: bool | None = None
    #: Modelled platform share of a Lambda cold start, reported beside the measured one.
    lambda_platform_init_ms: float = 0.0
    prices: Prices = field(default_factory=Prices)
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: Each stage is measured this many times (--trials).
    trials: int = 1
    #: The user's service-level objective (--slo), as given: {"p99": ms, "rps": ...}.
    slo: dict[str, float] = field(default_factory=dict)
    #: The p99 objective (--slo, else the scenario's slo_p99_ms), as given. Sweeps stop
    #: past it, or without one past the decision's default (reports.objective.sweep_p99_ms).
    slo_p99_ms: float | None = None
    #: The harness's ceilings on this machine (harness.calibrate), or why there are none.
    calibration: Calibration | None = None
    calibration_note: str | None = None
    #: Expected requests a month (--monthly-requests), for the report's costs; None: the
    #: report's default.
    monthly_requests: float | None = None
    #: Deployments already running elsewhere (--endpoint NAME=URL), by target name.
    endpoints: dict[str, str] = field(default_factory=dict)
    #: Locust worker processes driving served targets (--loadgen-workers).
    loadgen_workers: int = 1
    #: Workers started on other machines (--loadgen-remote-workers) and where the master
    #: listens for them (--loadgen-master HOST:PORT).
    remote_workers: int = 0
    loadgen_master: str | None = None
    #: What every served target accepts (--max-body-bytes, --max-batch).
    limits: codec.Limits = codec.DEFAULT_LIMITS
    #: --runtime docker: how the served targets' containers run (None: as processes).
    docker: DockerRuntime | None = None


class RunObserver(Protocol):
    """What the runner tells whoever shows progress (the CLI's console, or nothing)."""

    def message(self, text: str) -> None: ...
    def target_started(self, name: str, stages: int, seconds: float) -> None: ...
    def load_event(self, name: str, event: dict[str, Any]) -> None: ...
    def target_finished(self, result: TargetResult) -> None: ...


class SilentObserver:
    def message(self, text: str) -> None:
        pass

    def target_started(self, name: str, stages: int, seconds: float) -> None:
        pass

    def load_event(self, name: str, event: dict[str, Any]) -> None:
        pass

    def target_finished(self, result: TargetResult) -> None:
        pass


TargetFactory = Callable[[str, RunPlan, str, Path], "Target"]


def make_target(name: str, plan: RunPlan, encoding: str, log_dir: Path) -> Target:
    """``name`` is a result's name: a target's, or with --encodings ``TARGET-ENCODING``,
    with --batching ``TARGET+batch``, with several --lambda-memory-mb sizes ``lambda-MB``
    (built at that size) (its log and records files are named after it, so no two results
    share one)."""
    planned = encodings.find(name, plan.targets, plan.endpoints, plan.encodings or (encoding,),
                             plan.batching, plan.lambda_memory_sizes, plan.monitoring)
    deployment = planned.deployment if planned is not None else name
    setup = registry.Setup(name=name, bundle=plan.bundle, cpus=tuple(plan.cpus.target),
                           encoding=encoding, log_dir=log_dir, limits=plan.limits,
                           runtime=plan.docker or LOCAL,
                           peak_concurrency=plan.scenario.peak_concurrency(),
                           batching=planned.batching if planned is not None else None,
                           monitoring=planned.monitoring if planned is not None else OFF)
    url = plan.endpoints.get(deployment)
    if url is not None:
        return registry.external(url, setup)
    found = registry.find(deployment)
    if found is None or found.role == "calibrate":
        known = ", ".join(RUNNABLE)
        raise UserError(f"unknown target ({deployment!r}). Choose from: {known}")
    values = dict(vars(plan))
    if planned is not None and planned.memory_mb is not None:  # a lambda-MB result
        values[f"{deployment.replace('-', '_')}_memory_mb"] = planned.memory_mb
    return registry.build(found, setup, found.options_from(values))


def _stopped_by(exc: BaseException) -> str:
    """Why a run ended before its last target, in words for the report."""
    if isinstance(exc, KeyboardInterrupt):
        signum = getattr(exc, "signum", None)
        name = signal.Signals(signum).name if signum else "SIGINT"
        return f"it was interrupted ({name}) and stopped what it had started"
    if isinstance(exc, ParityError):
        return f"a deployment answered differently from in-process ({exc})"
    return f"it stopped on an error ({type(exc).__name__}: {exc})"


def _run_doc(plan: RunPlan, bundle: Bundle, wires: tuple[str, ...],
             planned: list[encodings.Measurement]) -> RunDoc:
    """run.json as written before any target: what was asked, on what, with no results."""
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "metadata": {
            **metadata.collect_all(),
            "bundle": label(plan.bundle),
            "bundle_spec": plan.bundle,
            "scenario": plan.scenario.name,
            "scenario_sha256": plan.scenario.sha256,
            # The machine's, not the orchestrator's own after it pinned itself.
            "cpus_allowed": sorted(plan.cpus.allowed
                                   or {*plan.cpus.target, *plan.cpus.loadgen}),
            "target_cpus": list(plan.cpus.target),
            "loadgen_cpus": list(plan.cpus.loadgen),
            "cpu_overlap": list(plan.cpus.overlap),
            "smt_shared_cores": [list(core) for core in plan.cpus.shared_cores],
            "encoding": ",".join(wires),
            "encodings": list(wires),
            "batching": str(plan.batching) if plan.batching else None,
            "targets_requested": list(plan.targets),
            "results_planned": [m.name for m in planned],
            "endpoints": dict(plan.endpoints),
            "loadgen_workers": plan.loadgen_workers,
            "loadgen_remote_workers": plan.remote_workers,
            "runtime": (plan.docker or LOCAL).kind,
            "trials": plan.trials,
            "slo": plan.slo,
            "slo_p99_ms": plan.slo_p99_ms,
            "monthly_requests": plan.monthly_requests,
            "calibration": plan.calibration,
            "calibration_note": plan.calibration_note,
            "lambda_platform_init_ms": plan.lambda_platform_init_ms,
        },
        "scenario": cast("ScenarioBlock", plan.scenario.to_json()),
        "prices": plan.prices,
        "bundle": cast("BundleInfo", recorded_info(bundle)),
        "targets": [],
        "samples_file": SAMPLES_FILE,
        "notes": list(plan.notes),
    }


class Runner:
    def __init__(self, plan: RunPlan, loadgen: LoadGenerator,
                 observer: RunObserver | None = None,
                 target_factory: TargetFactory = make_target,
                 checked: CheckedBundle | None = None) -> None:
        self.plan = plan
        #: The bundle as check_bundle left it (cmd_run checks it before choosing --out).
        self.checked = checked
        self.loadgen = loadgen
        self.observer = observer or SilentObserver()
        self.target_factory = target_factory
        self.encoding = plan.encoding or "json"
        #: Whether the result being measured is batched (its target must keep a batch log).
        self.batched = False
        #: The result measured last (its load job tells remote workers to exit after it).
        self.last_name = plan.targets[-1] if plan.targets else None
        #: Ctrl-C (or SIGTERM/SIGHUP) during a target's load: raised again once what that
        #: target measured is in run.json.
        self.interrupted: KeyboardInterrupt | None = None

    def run(self) -> RunDoc:
        plan = self.plan
        out = plan.out_dir
        log_dir = out / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        checked = self._checked_bundle()
        bundle, examples, reference = checked.bundle, checked.examples, checked.reference
        encoding = plan.encoding or bundle.default_encoding
        self.encoding = encoding
        wires = plan.encodings or (encoding,)
        planned = encodings.measurements(plan.targets, plan.endpoints, wires, plan.batching,
                                         plan.lambda_memory_sizes, plan.monitoring)
        self.last_name = planned[-1].name if planned else None
        doc = _run_doc(plan, bundle, wires, planned)
        write_run(out, doc)
        samples = SampleWriter(out / SAMPLES_FILE)
        try:
            for measurement in planned:
                self.encoding = measurement.encoding  # for its codec cost
                self.batched = measurement.batching is not None
                target = self.target_factory(measurement.name, plan, measurement.encoding,
                                             log_dir)
                result = self._measure(target, examples, reference, samples, log_dir)
                result["deployment"] = measurement.deployment
                result["encoding"] = measurement.wire
                result["batching"] = (str(measurement.batching) if measurement.batching
                                      else None)
                result["monitoring"] = measurement.monitoring.mode
                doc["targets"].append(result)
                write_run(out, doc)
                if self.interrupted is not None:  # its stages so far are kept above
                    raise self.interrupted
                self.observer.target_finished(result)
        except BaseException as exc:
            doc["status"] = "partial"
            doc["stopped_by"] = _stopped_by(exc)
            write_run(out, doc)
            raise
        doc["status"] = "complete"
        write_run(out, doc)
        return doc

    def _checked_bundle(self) -> CheckedBundle:
        """The bundle, prepared once, here (targets then only load the cached artefacts),
        and checked before any target starts: a broken bundle is refused with what and
        where. cmd_run may have checked it already."""
        if self.checked is not None:
            return self.checked
        self.observer.message(f"preparing bundle {label(self.plan.bundle)} (trains at first "
                              "use)")
        return check_bundle(self.plan.bundle, max_batch=self.plan.limits.max_batch)

    def _cold_starts(self, target: Target, example: Any) -> ColdStarts:
        """N cold starts: from nothing to the target's first good answer, each."""
        measure = getattr(target, "cold_start", None)
        if measure is None:
            return {"supported": False}
        n = self.plan.scenario.cold_starts
        samples = []
        for i in range(n):
            self.observer.load_event(target.name, {"event": "cold_start", "index": i,
                                                   "of": n})
            samples.append(measure(example))
        totals = np.array([s["total_s"] * 1000.0 for s in samples])
        return {"supported": True, "samples": samples, "total_ms": summarize_latency(totals),
                "definition": samples[0].get("definition") if samples else None}

    def _redeploys(self, target: Target, example: Any, expected: list[Any]) -> Redeploys:
        """N redeploys: a new model version handed to the running deployment, to its
        first good prediction from that version. The answer must be the bundle's."""
        measure = getattr(target, "redeploy", None)
        if measure is None:
            return {"supported": False}
        n = self.plan.scenario.redeploys
        samples = []
        error = None
        for i in range(n):
            self.observer.load_event(target.name, {"event": "redeploy", "index": i, "of": n})
            try:
                sample = measure(example)
            except TargetError as exc:  # the old version still serves: measure it
                error = f"redeploy {i + 1} of {n} failed: {exc}"
                self.observer.message(f"{target.name}: {error}")
                break
            problem, _ = compare_predictions(expected, sample.pop("predictions"))
            if problem is not None:
                raise ParityError(f"{target.name} after a redeploy {problem}")
            samples.append(sample)
        totals = np.array([s["total_s"] * 1000.0 for s in samples])
        return {"supported": True, "samples": samples, "error": error,
                "total_ms": summarize_latency(totals) if samples else None,
                "kind": samples[0].get("kind") if samples else None,
                "definition": samples[0].get("definition") if samples else None}

    def _measure(self, target: Target, examples: list[Any], reference: list[Any],
                 samples: SampleWriter, log_dir: Path) -> TargetResult:
        """One target: started, checked, driven through the scenario and stopped; then
        its stages summarised. A target that fails is a result with its error."""
        plan = self.plan
        name = target.name
        result: TargetResult = {"name": name, "status": "failed", "error": None, "describe": {},
                                "parity": None, "stages": [], "loadgen": {}}
        self.observer.target_started(name, plan.scenario.planned_stages() * plan.trials,
                                     plan.scenario.estimated_s * plan.trials)
        # A target whose real path runs inside the load generator (in-process) has its
        # parity checked there, through that path, before any load.
        parity_in_loadgen = getattr(target, "parity_in_load_generator", False)
        try:
            with target:
                self._check_batching(target)
                self._before_load(target, examples, reference, result, parity_in_loadgen)
                job = self._load_job(target, examples, reference, log_dir, parity_in_loadgen)
                result["codec"] = codec_cost(str(job.spec.get("protocol")), self.encoding,
                                             examples[0], reference[0])
                # Invocations before this (parity, cold-start measurements) are not the
                # first stage's scale-out.
                load_started = time.time()
                load = self.loadgen.run(job, lambda e: self.observer.load_event(name, e))
                records = self._after_load(target, load, result)
        except ParityError:
            raise  # a deployment that answers differently must not be measured at all
        except (TargetError, UserError) as exc:
            result["error"] = str(exc)
            return result
        if load.parity is not None:
            result["parity"] = load.parity
        result["loadgen"] = cast("LoadgenInfo", load.info)
        # Read once the target has stopped: its servers have flushed their logs.
        batches = self._batch_log(target)
        monitoring.add_prediction_log(result, target, plan.out_dir)
        result["stages"] = self._stages(name, load, records, samples, load_started, batches)
        self.interrupted = load.interrupted
        if load.error is not None:  # stopped before its last stage: keep what it measured
            result["error"] = load.error
            return result
        result["status"] = "ok"
        return result

    def _check_batching(self, target: Target) -> None:
        """A batched result's target, started, keeps a batch log: without one it would be
        measured unbatched under a batched name."""
        if self.batched and getattr(target, "batch_log_dir", None) is None:
            raise TargetError(f"{target.name} was asked to batch (--batching) but its server "
                              "keeps no batch log: this deploybench's servers cannot batch")

    def _batch_log(self, target: Target) -> np.ndarray | None:
        """A batched result's forward passes (read_batch_log); None when unbatched."""
        folder = getattr(target, "batch_log_dir", None) if self.batched else None
        return read_batch_log(folder) if folder is not None else None

    def _before_load(self, target: Target, examples: list[Any], reference: list[Any],
                     result: TargetResult, parity_in_loadgen: bool) -> None:
        """The running target described, its answers checked against the reference (unless
        the load generator checks them), and its cold starts and redeploys measured."""
        result["describe"] = cast("TargetDescription", target.describe())
        if not parity_in_loadgen:
            result["parity"] = check_parity(target, examples, reference)
        if self.plan.scenario.cold_starts:
            result["cold_starts"] = self._cold_starts(target, examples[0])
        if self.plan.scenario.redeploys:
            result["redeploys"] = self._redeploys(target, examples[0], reference[0])

    def _load_job(self, target: Target, examples: list[Any], reference: list[Any],
                  log_dir: Path, parity_in_loadgen: bool) -> LoadJob:
        """What the load generator is to do to this target."""
        plan = self.plan
        name = target.name
        return LoadJob(
            target=name, spec=target.load_spec(examples), scenario=plan.scenario,
            loadgen_cpus=list(plan.cpus.loadgen),
            work_dir=plan.out_dir / ".work" / name,
            log_path=log_dir / f"loadgen-{name}.log",
            reference=reference if parity_in_loadgen else None,
            answers=[codec.answer_shape(preds) for preds in reference],
            trials=plan.trials, slo_p99_ms=sweep_p99_ms(plan.slo, plan.slo_p99_ms),
            loadgen_workers=plan.loadgen_workers,
            remote_workers=plan.remote_workers, master=plan.loadgen_master,
            final=name == self.last_name,
        )

    @staticmethod
    def _after_load(target: Target, load: LoadResult,
                    result: TargetResult) -> list[dict[str, Any]] | None:
        """What the target says once its load is over, while it still runs: why its server
        exited (added to the load's error), its platform's records of each invocation
        (returned; None for a target without), and its final facts (added to describe)."""
        exit_note = getattr(target, "exit_note", None)
        if load.error is not None and exit_note is not None and exit_note():
            load.error = f"{load.error}. {target.name}'s server: {exit_note()}"
        records = target.platform_records() if hasattr(target, "platform_records") \
            else None
        final = getattr(target, "final_facts", None)
        if final is not None:
            result["describe"].update(final())
        return records

    def _stages(self, name: str, load: LoadResult, records: list[dict[str, Any]] | None,
                samples: SampleWriter, load_started: float,
                batches: np.ndarray | None = None) -> list[StageResult]:
        """Each stage the load measured, summarised and judged (with the platform's
        figures for its window where there are records, and the batches formed in it
        for a batched result); its samples appended to the run's samples file."""
        stages = []
        previous_end = load_started
        rules = Rules(max_error_rate=self.plan.scenario.max_error_rate)
        for index, raw in enumerate(load.stages):
            stage = summarize_stage(raw, rules)
            if records is not None:
                stage["platform"] = summarize_invocations(records, raw.window_start,
                                                          raw.window_end, self.plan.prices,
                                                          warmup_from=previous_end)
            stage["batching"] = (None if batches is None else
                                 summarize_batches(batches, raw.window_start, raw.window_end))
            previous_end = raw.window_end
            if raw.target_metrics is not None:  # run --metrics: the target's own count
                stage["target_metrics"] = cross_check(raw)
            if raw.interrupted:
                stage["valid"] = False
                stage["reasons"].insert(0, (
                    f"interrupted: the load generator was stopped "
                    f"{raw.window_end - raw.measure_start:.1f} s into this stage's measurement "
                    "(the target's error says why); its figures cover that time only"))
            stages.append(stage)
            samples.append(name, index, raw.concurrency, raw.start_s, raw.latency_ms, raw.ok,
                           raw.phases(), raw.cold_flags(), raw.send_delays())
        return stages

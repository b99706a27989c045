"""The nested blocks of a target and of the run in ``run.json``, typed: a target's
description, load-generator facts, codec cost, cold starts and redeploys; the run's
metadata (with the calibration it applied), scenario, prices and bundle.

:mod:`reports.schema` assembles them into ``TargetResult`` and ``RunDoc`` and lists in
its docstring what each schema version added; :mod:`reports.stageblocks` holds a stage's
blocks. Keys a version added after the block first appeared are ``NotRequired``: an
upgraded older file may lack them. Blocks written from another component's open-ended
facts (a target's ``describe``, the bundle's ``info()``) are ``total=False``: the keys
listed are the ones deploybench writes and reads; a deployment may add its own.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from reports.stageblocks import LatencySummary
from targets.awslambda.shape import Sandbox

# -- a target's blocks -------------------------------------------------------------------

class LambdaFunction(TypedDict):
    """An --endpoint Lambda function (targets.awslambda.invoke.FunctionAddress)."""

    region: str
    #: A name or a full ARN, as the Invoke API takes either.
    function: str
    qualifier: str | None
    endpoint_url: str | None


class MonitoringDescription(TypedDict, total=False):
    """What a target was asked to do besides serving (targets.monitoring, issue 22): the
    mode ("off", "metrics", "log", "metrics+log"), whether it exposed metrics, the share
    of requests it logged, where its metrics were scraped and its predictions logged."""

    mode: str
    metrics: bool
    log_rate: float
    metrics_url: str | None
    prediction_log_dir: str | None


class TargetDescription(TypedDict, total=False):
    """What was deployed and how (each target's ``describe()``, then for containers the
    figures read after the load). Each deployment writes the keys that apply to it."""

    #: "process", "docker (NETWORK network)", "simulated" (--targets fake), ...
    runtime: str
    server: str
    address: str
    url: str
    cpus: list[int]
    workers: int | None
    threads_per_worker: int | None
    torch_threads_per_worker: int | None
    encoding: str
    #: Launch to the first healthy answer (s).
    startup_s: float
    max_body_bytes: int
    max_batch: int
    pid: int
    #: Lambda: configured memory (MB), concurrent environments, timeout and keep-alive (s).
    memory_mb: int
    concurrency_limit: int
    timeout_s: float
    keepalive_s: float
    #: Lambda emulator: how its environments were shaped (CPU share, memory limit,
    #: freeze) and whether the kernel enforced it; None where it could not be read.
    sandbox: Sandbox | None
    #: Lambda emulator with --metrics: its per-minute CloudWatch statistics file (None:
    #: metrics off).
    cloudwatch_file: str | None
    #: --endpoint: not started or measured by deploybench; how it bills ("per_request"
    #: for a Lambda function), the function, and whether requests are signed with AWS
    #: credentials.
    external: bool
    billing: str
    function: LambdaFunction
    signed: bool
    #: --runtime docker: the image and the limits it ran under.
    image: str
    image_id: str
    image_size_mb: float
    image_created: str
    network: str
    memory_limit_mb: int | None
    cpuset: list[int]
    limits_from: str
    limits: str
    #: --runtime docker, read after the load: the container's memory less its page
    #: cache, and its peak (MB, as Docker counts them).
    container_memory_mb: float | None
    container_memory_peak_mb: float | None
    #: run --metrics / --log-predictions (issue 22).
    monitoring: MonitoringDescription
    #: deploybench calibrate's null targets: the fixed delay and stall they answer with
    #: (ms, s), and what they answer.
    calibration: bool
    delay_ms: float
    stall_after_s: float | None
    stall_s: float
    answers: str
    #: --targets fake: the simulated service time (s) and capacity.
    service_time_s: float
    capacity: int
    #: rayserve: the Ray version it ran on (an optional extra, so not in the run's
    #: metadata).
    ray_version: str | None
    #: A served target's batching settings ("max_batch=N,max_wait_ms=M"; None: none).
    batching: str | None


class LoadgenWorker(TypedDict):
    """A distributed load-generator worker: its place, host, PID, whether it ran on this
    machine, and its clock's offset from the master's (ms)."""

    index: int
    host: str
    pid: int
    local: bool
    clock_offset_ms: float


class LoadgenInfo(TypedDict, total=False):
    """Facts about the load generator's run of this target."""

    #: In-process: the model lives in the load generator's process; its load time and
    #: first prediction (s), and the process's RSS before the model was loaded (MB).
    target_in_loadgen: bool
    load_s: float
    rss_before_model_mb: float
    pool_threads: int
    #: --loadgen-workers / --loadgen-remote-workers: the workers and the master's address.
    loadgen_workers: int
    loadgen_remote_workers: int
    loadgen_master: str
    workers: list[LoadgenWorker]
    #: The simulated load generator of the unit tests and --targets fake.
    simulated: bool


class CodecCost(TypedDict):
    """The wire encoding's cost for one example request, timed in the harness (ms):
    encode and decode of request and response, their total, and ``on_path_ms``, the steps
    on the measured path (schema 5; for a version-4 file the upgrade fills it with the
    server's two steps, all its path held). ``request_bytes``: one request's body."""

    request_encode_ms: float
    request_decode_ms: float
    response_encode_ms: float
    response_decode_ms: float
    total_ms: float
    on_path_ms: float
    encoding: str
    request_bytes: int


class StartSample(TypedDict, total=False):
    """One cold start or redeploy: ``total_s`` launch (or new version) to the first good
    answer; the parts each deployment can tell apart (s, ms)."""

    total_s: float
    ready_s: float
    first_request_ms: float
    init_ms: float
    #: A Lambda redeploy: the function's code version the new environments run.
    code_version: int | None
    kind: str
    definition: str


class ColdStarts(TypedDict):
    """The scenario's cold starts of a target (runner._cold_starts)."""

    supported: bool
    samples: NotRequired[list[StartSample]]
    total_ms: NotRequired[LatencySummary | None]
    definition: NotRequired[str | None]


class Redeploys(ColdStarts):
    """The scenario's redeploys: new model version to first good prediction
    (runner._redeploys); a cold start's block, with why it could not run and how the
    new version was handed over."""

    error: NotRequired[str | None]
    kind: NotRequired[str | None]


# -- the run's blocks --------------------------------------------------------------------

class SweepSettings(TypedDict):
    start: int
    factor: float
    max: int
    min_gain: float
    patience: int


class SegmentSettings(TypedDict):
    users: int
    seconds: float
    label: str


class ScenarioBlock(TypedDict):
    """The scenario as run (scenarios.catalogue.Scenario.to_json): seconds, users, rates."""

    name: str
    description: str
    concurrency: list[int]
    warmup_s: float
    #: One measurement window (``duration_s`` before schema 3).
    window_s: float
    cooldown_s: float
    drain_timeout_s: float
    sha256: str
    path: str
    warmup_max_s: NotRequired[float]
    cold_starts: NotRequired[int]
    redeploys: NotRequired[int]
    stability_windows: NotRequired[int]
    stability_tolerance: NotRequired[float]
    max_windows: NotRequired[int]
    max_error_rate: NotRequired[float]
    sweep: NotRequired[SweepSettings | None]
    rate: NotRequired[list[float]]
    rate_fractions: NotRequired[list[float]]
    arrival: NotRequired[str]
    max_inflight: NotRequired[int]
    late_tolerance_ms: NotRequired[float]
    seed: NotRequired[int]
    slo_p99_ms: NotRequired[float | None]
    #: A timeline stage's segments and its series' interval (schema 5).
    timeline: NotRequired[list[SegmentSettings]]
    sample_s: NotRequired[float]
    #: A window stretches up to this until it holds p99's share of requests (None: it
    #: lasts window_s), and the Lambda memory sizes ``run`` compares by default.
    window_max_s: NotRequired[float | None]
    lambda_memory_mb: NotRequired[list[int]]
    #: The monitoring modes ``run`` compares by default, and the scrapes' interval.
    monitoring: NotRequired[list[str]]
    scrape_interval_s: NotRequired[float]


class Prices(TypedDict, total=False):
    """The prices cost estimates use (reports.pricing: dated defaults or the user's
    file), in ``currency`` (USD), by architecture where they differ."""

    as_of: str
    source: str
    currency: str
    #: Lambda: per request, per GB-second, and whether Init is billed.
    lambda_request: float
    lambda_gb_second: dict[str, float]
    lambda_bill_init: bool
    #: Provisioned concurrency (issue 21): per GB-second kept configured and per GB-second
    #: of duration while serving, by architecture; its source and date.
    provisioned_source: str
    provisioned_as_of: str
    provisioned_gb_second: dict[str, float]
    provisioned_duration_gb_second: dict[str, float]
    #: Lambda Managed Instances (issue 21): the instance type, its EC2 on-demand price an
    #: hour and its vCPUs, by architecture; the management fee (a fraction of the EC2
    #: price), the per-request fee, the instances always kept; its source and date.
    managed_source: str
    managed_as_of: str
    managed_instance_type: dict[str, str]
    managed_instance_hour: dict[str, float]
    managed_instance_vcpus: dict[str, int]
    managed_fee: float
    managed_request: float
    managed_min_instances: int
    #: An always-on container (schema 4): per vCPU-hour and GB-hour, its smallest
    #: memory per vCPU, how many always run, and hours in a month.
    container_source: str
    container_as_of: str
    container_vcpu_hour: dict[str, float]
    container_gb_hour: dict[str, float]
    container_min_gb_per_vcpu: float
    container_min_instances: int
    hours_per_month: float


class BundleInfo(TypedDict, total=False):
    """The model bundle (targets.bundle's ``info()``): what it is and its checksum."""

    name: str
    description: str
    input_shape: list[int]
    classes: int
    parameters: int
    preprocessing: str
    accuracy: float
    sha256: str
    examples: int
    model_format: str
    source: str
    user_bundle: bool


class Ceiling(TypedDict, total=False):
    """A protocol's ceiling on this machine: its null target's best stage without
    failures (harness.calibrate.ceilings), or the ``error`` that stopped it."""

    rps: float
    users: int | None
    valid: bool
    reasons: list[str]
    p50_ms_at_1_user: float | None
    loadgen_cpu_percent: float
    target_cpu_percent: float
    #: "load generator", "null server", both, or "neither side saturated (...)".
    limited_by: str
    error: str


class CalibrationMachine(TypedDict):
    """What must match for a calibration to apply to a run (harness.calibrate.fingerprint)."""

    hostname: str | None
    cpu_model: str | None
    cpu_count: int | None
    target_cpus: list[int]
    loadgen_cpus: list[int]
    deploybench: str | None
    locust: str | None


class Calibration(TypedDict):
    """``deploybench calibrate``'s file, as the run that applied it records it."""

    created_at: str | None
    run_dir: str
    machine: CalibrationMachine
    #: By protocol ("http", "grpc").
    ceilings: dict[str, Ceiling]


class Metadata(TypedDict, total=False):
    """The machine, the versions and the settings of the run (harness.metadata and the
    runner's plan). Keys added after schema 1 are absent from older files."""

    # The host (harness.metadata.collect_host).
    hostname: str
    platform: str
    kernel: str
    started_at: str
    command: str
    # The CPU and memory (collect_cpu); cpus_allowed: the machine's, before pinning.
    cpu_model: str | None
    cpu_count: int | None
    cpus_allowed: list[int]
    cpu_mhz: int | None
    memory_gb: float
    # Versions (collect_versions; None where a package is not installed) and the commit.
    python: str
    deploybench: str
    torch: str | None
    locust: str | None
    flask: str | None
    gunicorn: str | None
    fastapi: str | None
    uvicorn: str | None
    numpy: str | None
    gevent: str | None
    geventhttpclient: str | None
    git_commit: str | None
    git_dirty: bool | None
    # The run's settings.
    bundle: str
    bundle_spec: str
    scenario: str
    scenario_sha256: str
    target_cpus: list[int]
    loadgen_cpus: list[int]
    cpu_overlap: list[int]
    smt_shared_cores: list[list[int]]
    #: The encodings asked for, joined with commas (``encodings``: as a list).
    encoding: str
    encodings: list[str]
    #: --batching as given (``both,max_batch=16,max_wait_ms=2``: harness.encodings.Batching);
    #: None: nothing batched (schema 6).
    batching: str | None
    targets_requested: list[str]
    results_planned: list[str]
    endpoints: dict[str, str]
    loadgen_workers: int
    loadgen_remote_workers: int
    #: "process" or "docker".
    runtime: str
    trials: int
    #: --slo as given ({"p99": ms, "rps": ...}) and the p99 objective in effect (ms).
    slo: dict[str, float]
    slo_p99_ms: float | None
    monthly_requests: float | None
    #: The machine's calibration (harness.calibrate), or None and why not.
    calibration: Calibration | None
    calibration_note: str | None
    lambda_platform_init_ms: float | None

"""schemathesis fuzzes the real Flask and FastAPI targets, each from the OpenAPI
description it serves (``GET /openapi.json``): schema-valid and schema-violating requests,
every check but one (tests/fuzz/schemathesis.toml says which and why). Nothing may get a
5xx, a violating request must get a 4xx, and every answer must match the description.

The counts are left in build/test-artifacts/fuzz.json (flask) and fuzz-fastapi.json.
``DEPLOYBENCH_FUZZ_EXAMPLES`` and ``DEPLOYBENCH_FUZZ_SEED`` run more cases or other ones
(the default seed keeps CI reproducible).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cpus import CpuPlan
from targets.fastapi.target import FastapiTarget
from targets.flask.target import FlaskTarget
from tests.corpus import LIMITS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "tests" / "fuzz" / "schemathesis.toml"
ARTIFACTS = REPO / "build" / "test-artifacts"


#: The deployments serving the HTTP API and its description, by name.
SERVERS: dict[str, type[FlaskTarget] | type[FastapiTarget]] = {
    "flask": FlaskTarget, "fastapi": FastapiTarget}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, cpus: CpuPlan,  # type: ignore[no-untyped-def]
           digits) -> Iterator[FlaskTarget | FastapiTarget]:
    with SERVERS[request.param]("digits", list(cpus.target), "json",
                                limits=LIMITS) as target:
        yield target


def test_the_description_is_served_and_says_the_limits(server: FlaskTarget | FastapiTarget) -> None:
    assert server._client is not None
    status, body = server._client.request("GET", "/openapi.json")
    assert status == 200
    doc = json.loads(body)
    request = doc["components"]["schemas"]["Request"]
    assert request["properties"]["inputs"]["maxItems"] == LIMITS.max_batch
    assert request["additionalProperties"] is False
    assert set(doc["paths"]["/predict"]["post"]["responses"]) == {"200", "400", "413", "415"}
    assert doc["info"]["title"] == f"deploybench {server.name} target (digits)"


def test_schemathesis_finds_no_failure(server: FlaskTarget | FastapiTarget, tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None, "schemathesis is a dev dependency: make setup installs it"
    report = tmp_path / "schemathesis.json"
    examples = os.environ.get("DEPLOYBENCH_FUZZ_EXAMPLES", "150")
    seed = os.environ.get("DEPLOYBENCH_FUZZ_SEED", "20261128")
    done = subprocess.run(
        [cli, "--config-file", str(CONFIG), "run", f"http://{server.address}/openapi.json",
         "--checks", "all", "--exclude-checks", "positive_data_acceptance",
         "--max-examples", examples, "--seed", seed, "--workers", "1",
         "--report", "json", "--report-json-path", str(report), "--no-color"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    result = json.loads(report.read_text())
    cases = result["test_cases"]
    assert cases["generated"] >= 100
    assert cases["with_failures"] == 0
    assert cases["errored"] == 0
    # /predict and /healthz (schemathesis leaves out the description's own URL)
    assert result["operations"]["tested"] == 2
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = "fuzz.json" if server.name == "flask" else f"fuzz-{server.name}.json"
    (ARTIFACTS / name).write_text(json.dumps(
        {"seed": int(seed), "max_examples": int(examples), "test_cases": cases,
         "phases": {k: v["status"] for k, v in result["phases"].items()}}, indent=2) + "\n")

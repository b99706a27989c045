"""Redeploys: a new model version handed to a running deployment, timed to its first
good prediction from that version, the old version serving until then."""

from __future__ import annotations

import psutil
import pytest

from harness.cpus import CpuPlan
from targets.awslambda.frontdoor import COLD_HEADER
from targets.awslambda.target import LambdaTarget
from targets.bundles.protocol import serve_batch
from targets.bundles.resolve import get_bundle
from targets.errors import TargetError
from targets.fastapi.target import FastapiTarget
from targets.flask.target import FlaskTarget
from targets.wire import codec

pytestmark = pytest.mark.integration


def test_lambda_code_update_retires_every_old_environment(cpus: CpuPlan, digits) -> None:  # type: ignore[no-untyped-def]
    bundle = get_bundle("digits")
    bundle.load()
    example = bundle.example_requests()[0]
    with LambdaTarget("digits", list(cpus.target), "json", concurrency=2) as target:
        body, headers = codec.encode_request(example, "json")
        target.request_with_headers(body, headers)  # a warm environment of version 1
        assert target.stats()["environments"] == 1
        sample = target.redeploy(example)
        assert sample["code_version"] == 2
        assert sample["init_ms"] > 0  # served by a new environment: its Init is in it
        assert sample["predictions"] == serve_batch(bundle, example)
        assert sample["total_s"] * 1000 > sample["init_ms"]
        # The old environment is gone; the new one serves warm from here on.
        _, _, reply = target.request_with_headers(body, headers)
        assert COLD_HEADER.lower() not in reply
        stats = target.stats()
        assert stats["environments"] == 1
        assert stats["code_version"] == 2


@pytest.mark.parametrize("kind", [FlaskTarget, FastapiTarget], ids=lambda k: k.name)
def test_served_redeploy_is_blue_green(cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                       kind: type[FlaskTarget] | type[FastapiTarget]) -> None:
    bundle = get_bundle("digits")
    bundle.load()
    example = bundle.example_requests()[0]
    with kind("digits", list(cpus.target), "json") as target:
        old_pid, old_port = target.server_pid, target.port
        sample = target.redeploy(example)
        assert 0 < sample["ready_s"] < sample["total_s"]
        assert sample["predictions"] == serve_batch(bundle, example)
        # The target now speaks to the new server; the old one is stopped.
        assert target.server_pid != old_pid
        assert target.port != old_port
        assert target.health()
        assert target.predict(example) == serve_batch(bundle, example)

        assert old_pid is not None
        assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"


def test_a_failed_redeploy_keeps_the_old_server_serving(cpus: CpuPlan, digits,  # type: ignore[no-untyped-def]
                                                        tmp_path) -> None:
    bundle = get_bundle("digits")
    bundle.load()
    example = bundle.example_requests()[0]
    with FlaskTarget("digits", list(cpus.target), "json",
                     log_path=tmp_path / "flask.log") as target:
        old_pid, old_port = target.server_pid, target.port
        target.bundle = str(tmp_path / "missing.py")  # the new version cannot start
        with pytest.raises(TargetError):
            target.redeploy(example)
        assert (target.server_pid, target.port) == (old_pid, old_port)
        assert target.health()
        assert target.predict(example) == serve_batch(bundle, example)

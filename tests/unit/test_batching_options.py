"""``--batching`` as the servers parse it and the served targets pass it (no server runs:
the servers that cannot batch refuse the option before they start anything)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from targets.awslambda import server as lambda_server
from targets.batching import BatchingSpec
from targets.entrypoint import threads_for
from targets.flask import server as flask_server
from targets.flask.target import FlaskTarget
from targets.grpc import server as grpc_server
from targets.grpc.target import GrpcTarget
from targets.nullhttp import server as null_server


def parse(module: object, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return parser.parse_args(argv)


@pytest.mark.parametrize("module", [flask_server, grpc_server])
def test_servers_parse_batching(module: object) -> None:
    args = parse(module, ["--batching", "max_batch=8", "--batch-log-dir", "/tmp/b"])
    assert args.batching == BatchingSpec(max_batch=8)
    assert args.batch_log_dir == "/tmp/b"
    assert args.threads is None  # resolved by prepare_server with the batching
    assert parse(module, []).batching is None


def test_a_bad_batching_spec_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(flask_server, ["--batching", "max_batch=0"])
    assert exit_info.value.code == 2
    assert "max_batch must be at least 1" in capsys.readouterr().err


def test_threads_default_to_max_batch_under_batching() -> None:
    assert threads_for(None, 1) == 1
    assert threads_for(BatchingSpec(max_batch=16), 1) == 16
    assert threads_for(BatchingSpec(max_batch=2), 4) == 4


@pytest.mark.parametrize(("module", "argv", "says"), [
    (flask_server, ["--worker-class", "gevent"], "use --worker-class gthread"),
    (flask_server, ["--worker-class", "sync"], "use --worker-class gthread"),
    (null_server, [], "no model"),
    (lambda_server, [], "one event at a time"),
])
def test_servers_that_cannot_batch_refuse_it(module: object, argv: list[str], says: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(module, [*argv, "--batching", "max_batch=4"])
    with pytest.raises(SystemExit) as exit_info:
        module.serve(args)  # type: ignore[attr-defined]
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --batching max_batch=4,max_wait_ms=0: ")
    assert says in err


def test_a_batching_target_passes_its_spec_and_log_folder(tmp_path: Path) -> None:
    spec = BatchingSpec(max_batch=32, max_wait_ms=1.5)
    flask = FlaskTarget("digits", [1], "json", batching=spec, log_path=tmp_path / "x.log")
    flask.name = "flask-json"  # as the registry names a result
    assert flask.threads == 32
    assert flask.batch_log_dir == tmp_path / "flask-json-batches"
    assert flask.batching_arguments() == ["--batching", "max_batch=32,max_wait_ms=1.5",
                                          "--batch-log-dir", str(tmp_path / "flask-json-batches")]
    assert flask.describe()["batching"] == "max_batch=32,max_wait_ms=1.5"
    grpc = GrpcTarget("digits", [1], "grpc", batching=BatchingSpec(max_batch=2), threads=3)
    assert grpc.threads == 3  # given: kept
    folder = grpc.batch_log_dir  # no server log: a temporary folder, the same each time
    assert folder is not None
    assert folder.is_dir()
    assert grpc.batch_log_dir == folder
    folder.rmdir()


def test_an_unbatched_target_says_so() -> None:
    target = GrpcTarget("digits", [1], "grpc")
    assert target.threads == grpc_server.DEFAULT_THREADS
    assert target.batch_log_dir is None
    assert target.batching_arguments() == []
    assert target.describe()["batching"] is None


def test_an_event_loop_server_keeps_its_pool_under_batching() -> None:
    """FastAPI's event loop holds the requests waiting in a batch: no thread each."""
    assert threads_for(BatchingSpec(max_batch=16), 2, waits_in_threads=False) == 2

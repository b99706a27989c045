"""What the docker runtime decides before any engine is asked: arguments and limits."""

from __future__ import annotations

from pathlib import Path

import psutil

from targets.awslambda.target import LambdaTarget
from targets.flask.target import FlaskTarget
from targets.runtimes.container import ContainerProcess, DockerRuntime


def test_the_servers_arguments_follow_the_images_entry_point() -> None:
    command = ["/venv/bin/python", "-m", "targets.flask.server", "--bundle", "digits",
               "--port", "8123"]
    process = ContainerProcess(DockerRuntime(), "flask", command, [1], None)
    assert process.arguments == ["--bundle", "digits", "--port", "8123"]


def test_memory_limits_by_target() -> None:
    flask = FlaskTarget("digits", [1, 2], "json")
    process = ContainerProcess(DockerRuntime(), "flask", [], [1, 2], None,
                               default_memory_mb=flask.container_memory_mb())
    assert process.memory_mb == 4096  # 2 GB per target CPU
    # Lambda: every environment with its own memory size, as on Lambda.
    aws = LambdaTarget("digits", [1], "json", concurrency=4, memory_mb=1024,
                       records_path=Path("r.jsonl"))
    host = int(psutil.virtual_memory().total / 2**20)
    assert aws.container_memory_mb() == min(host, 4096)
    # The user's limit wins.
    given = ContainerProcess(DockerRuntime(memory_mb=700), "lambda", [], [1], None,
                             default_memory_mb=aws.container_memory_mb())
    assert given.memory_mb == 700

"""Lambda Invoke API user: boto3's ``lambda`` client, one per user (one connection each,
as the HTTP and gRPC users have), calling the function synchronously as an application
does. boto3 runs on gevent's patched sockets here, so calls yield to other users.

The latency is the application's: signing, the HTTPS round trip, Lambda's routing and
the function, and reading the result. A call fails when there is no function result
(throttled, refused, unreachable, timed out), on a function error (``FunctionError``:
the handler raised, timed out or ran out of memory), or when the result is not a
well-formed answer: it is decoded as a client would and checked (one prediction per
request row, each a label among the expected number of finite probabilities;
``targets.wire.codec.answer_problem``).

Every answered call's REPORT fields (Lambda's own Duration, Billed Duration, Max Memory
Used, Init Duration) and every throttle are appended to a per-process JSON-lines file in
``records_dir``, which the harness summarises per stage as it does the emulator's
records; a REPORT line with Init Duration marks the call as a cold start.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, ClassVar, TextIO

from locust import User, task

from harness.loadgen.control import LoadControl
from harness.loadgen.swarm.users.closedloop import LoadUserMixin, answer_shapes
from targets.awslambda.invoke import FunctionAddress, InvokeError, invoke, make_client
from targets.wire.codec import AnswerShape, answer_problem, decode_predictions

#: How long a call may take: a cold start, then the invocation.
TIMEOUT_S = 60.0
#: Lambda's throttle: counted apart, as the emulator counts its own.
THROTTLED = "TooManyRequestsException"


class InvokeFailure(Exception):
    """A call that got no good function result, named as the Invoke API names it."""


class LambdaInvokeUser(LoadUserMixin, User):
    abstract = True
    address: ClassVar[FunctionAddress]
    events: ClassVar[list[bytes]]
    #: What a well-formed answer to each event holds (None: not known).
    answers: ClassVar[list[AnswerShape | None]]
    records_dir: ClassVar[str | None] = None
    connections: ClassVar[int] = 1
    signed: ClassVar[bool] = True
    _records: ClassVar[TextIO | None] = None

    def on_start(self) -> None:
        super().on_start()
        self.client = make_client(self.address, TIMEOUT_S, self.connections, self.signed)
        self.requests = list(zip(self.events, self.answers, strict=True))

    def on_stop(self) -> None:
        client = getattr(self, "client", None)  # None when on_start failed
        if client is not None:
            client.close()

    @task
    def predict(self) -> None:
        self.step()

    def items(self) -> list[tuple[bytes, AnswerShape | None]]:
        return self.requests

    def send(self, item: tuple[bytes, AnswerShape | None], intended: float | None = None,
             queued: bool = False) -> None:
        event, shape = item
        record: dict[str, Any] | None = None
        with self.timed("lambda", "Invoke", intended, queued) as call:
            try:
                result = invoke(self.client, self.address, event)
            except InvokeError as exc:
                if exc.code == THROTTLED:
                    record = {"ts": call.start_time, "source": "invoke",
                              "outcome": "throttled"}
                call.failure = InvokeFailure(str(exc))
            else:
                call.length = len(result.payload)
                if result.function_error is not None:
                    call.failure = InvokeFailure(result.error_text())
                else:
                    payload = result.payload
                    problem = answer_problem(lambda: decode_predictions(payload), shape)
                    if problem is not None:
                        call.failure = InvokeFailure(f"a result with {problem}: "
                                                     f"{payload[:120]!r}")
                if result.report is not None and "init_ms" in result.report:
                    call.context["cold"] = True
                record = result.record(call.start_time)
        # Written once the call is timed: the file write is the harness's, not the call's.
        if record is not None:
            self._record(record)

    @classmethod
    def _record(cls, record: dict[str, Any]) -> None:
        if cls.records_dir is None:
            return
        if cls._records is None:  # one file per process: workers never share one
            folder = Path(cls.records_dir)
            folder.mkdir(parents=True, exist_ok=True)
            cls._records = (folder / f"invocations-{os.getpid()}.jsonl").open(
                "a", encoding="utf-8")
        cls._records.write(json.dumps(record) + "\n")
        cls._records.flush()


def make_user(spec: dict[str, Any], control: LoadControl) -> type[LambdaInvokeUser]:
    address = FunctionAddress(**spec["function"])
    attrs = {
        "abstract": False, "address": address,
        "events": [e.encode() for e in spec["events"]],
        "answers": answer_shapes(spec, len(spec["events"])),
        "records_dir": spec.get("records_dir"), "control": control,
        "_ids": itertools.count(), "connections": int(spec.get("max_inflight", 1)),
        "signed": bool(spec.get("signed", True)),
    }
    return type("LambdaInvoke", (LambdaInvokeUser,), attrs)

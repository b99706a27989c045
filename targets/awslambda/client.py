"""Lambda's Invoke API as a deployment's protocol client (:class:`targets.base.PredictClient`):
a function running this project's handler, called with boto3 (:mod:`targets.awslambda.invoke`).

Health is a DryRun invocation (the function exists and may be invoked); parity invokes it
for real. The load generator's users append each call's REPORT fields to ``records_dir``,
summarised per stage like the emulator's records: invocations, cold starts, billed
duration, memory and cost as Lambda billed them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from targets.awslambda.invoke import (
    InvokeError,
    encode_event,
    has_credentials,
    invoke,
    make_client,
    parse_address,
)
from targets.base import ClientBase, Health, LoadSpec
from targets.errors import TargetError
from targets.wire import codec

if TYPE_CHECKING:
    import numpy as np

    from targets.bundles.protocol import Prediction

#: How long one call may take, a DryRun included.
CALL_TIMEOUT_S = 30.0


class InvokeClient(ClientBase):
    """``InvokeClient("fn", "lambda://eu-west-1/digits", "json", records_dir)``."""

    def __init__(self, name: str, url: str, encoding: str,
                 records_dir: Path | None = None) -> None:
        self.name = name
        self.function = parse_address(url)
        self.encoding = encoding
        self.records_dir = records_dir
        #: Whether calls are signed (False: an emulator, without credentials).
        self.signed = True
        self._client: Any = None
        self._memory_mb: int | None = None

    def open(self) -> None:
        try:
            self.signed = has_credentials(self.function)
            self._client = make_client(self.function, CALL_TIMEOUT_S, signed=self.signed)
        except InvokeError as exc:
            raise TargetError(f"endpoint {self.name}: {exc}") from None
        if self.records_dir is not None:
            self.records_dir.mkdir(parents=True, exist_ok=True)

    def _call(self, payload: bytes, dry_run: bool = False) -> Any:
        try:
            return invoke(self._client, self.function, payload, dry_run=dry_run)
        except InvokeError as exc:
            raise TargetError(f"endpoint {self.name} ({self.function.function}): {exc}"
                              ) from None

    def probe(self) -> Health:
        # Not a retryable wait: a function that is missing or may not be invoked says so.
        self._call(b"{}", dry_run=True)
        return Health(True)

    def predict(self, batch: np.ndarray) -> list[Prediction]:
        result = self._call(encode_event(batch, self.encoding))
        if result.function_error is not None:
            raise TargetError(f"endpoint {self.name}: function error {result.error_text()}")
        if result.report and result.report.get("memory_mb"):
            self._memory_mb = int(result.report["memory_mb"])
        try:
            return codec.decode_predictions(result.payload)
        except (ValueError, KeyError, TypeError) as exc:
            raise TargetError(f"endpoint {self.name} returned no predictions ({exc}): "
                              f"{result.payload[:200]!r}") from exc

    def load_spec(self, examples: list[np.ndarray]) -> LoadSpec:
        return {"protocol": "lambda-invoke", "function": self.function.describe(),
                "events": [encode_event(e, self.encoding).decode() for e in examples],
                "records_dir": str(self.records_dir) if self.records_dir else None,
                "signed": self.signed}

    def platform_records(self) -> list[dict[str, Any]] | None:
        """What the load generator recorded, or None when the function's log tails held
        no REPORT line (e.g. an emulator that returns none): no billed duration, so no
        cost, rather than a cost of zero."""
        if self.records_dir is None:
            return None
        records = [json.loads(line) for path in sorted(self.records_dir.glob("*.jsonl"))
                   for line in path.read_text().splitlines() if line.strip()]
        if any(r["outcome"] != "throttled" and not r.get("reported") for r in records):
            return None
        return sorted(records, key=lambda r: r["ts"])

    def final_facts(self) -> dict[str, Any]:
        return {"memory_mb": self._memory_mb}

    def facts(self) -> dict[str, Any]:
        return {"runtime": "AWS Lambda Invoke API via boto3 (not started or measured by "
                           "deploybench; REPORT lines give its durations and memory)",
                "server": "a Lambda function", "billing": "per_request",
                "function": self.function.describe(), "signed": self.signed,
                "encoding": f"{self.encoding} (direct-invocation event)"}

    def close(self) -> None:
        self._client = None

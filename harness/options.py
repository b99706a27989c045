"""Parsing what users type on the command line: targets, endpoints, SLOs, volumes."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from harness.calibrate import PROTOCOLS
from harness.encodings import Batching
from harness.runner import RUNNABLE, TEST_TARGETS
from targets.awslambda.shape import check_memory_mb
from targets.batching import BatchingSpec
from targets.registry import parse_endpoint
from targets.wire.codec import ENCODINGS

if TYPE_CHECKING:
    pass


def parse_targets(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in RUNNABLE + TEST_TARGETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown target {unknown[0] if unknown else text!r}; choose from "
            f"{', '.join(RUNNABLE)}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a target is named twice in {text!r}")
    return names


def parse_encodings(text: str) -> tuple[str, ...]:
    """``json,binary`` -> ("json", "binary"): each a codec encoding, none twice."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in ENCODINGS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown encoding {unknown[0] if unknown else text!r}; choose from "
            f"{', '.join(ENCODINGS)}, e.g. --encodings json,binary")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"an encoding is named twice in {text!r}")
    return names


def parse_memory_sizes(text: str) -> tuple[int, ...]:
    """``--lambda-memory-mb``: ``1769`` or ``512,1024,1769``, each a size Lambda allows
    (128 to 10,240 MB), none twice."""
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        try:
            sizes.append(check_memory_mb(int(part)))
        except ValueError as exc:
            why = str(exc) if part.isdigit() else f"not a whole number of MB ({part!r})"
            raise argparse.ArgumentTypeError(
                f"bad --lambda-memory-mb {text!r}: {why}; give sizes in MB, e.g. "
                "--lambda-memory-mb 512,1024,1769,3008") from None
    if len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"a memory size is named twice in {text!r}")
    return tuple(sizes)


def parse_batching(text: str) -> Batching:
    """``--batching``: ``max_batch=N,max_wait_ms=M`` (only batched), ``both`` (unbatched
    and batched, the defaults) or ``both,max_batch=N,max_wait_ms=M``."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unbatched = bool(parts) and parts[0].lower() == "both"
    settings = parts[1:] if unbatched else parts
    if not settings and not unbatched:
        raise argparse.ArgumentTypeError(
            f"bad --batching {text!r}: give max_batch=N,max_wait_ms=M, or both (unbatched "
            "and batched), e.g. --batching both,max_batch=16,max_wait_ms=2")
    if any(p.lower() == "both" for p in settings):
        raise argparse.ArgumentTypeError(f"bad --batching {text!r}: 'both' comes first, once")
    try:
        spec = BatchingSpec.parse(",".join(settings))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--batching: {exc}") from None
    return Batching(spec, unbatched)


def parse_endpoint_option(text: str) -> tuple[str, str]:
    try:
        name, url = parse_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if name in RUNNABLE + TEST_TARGETS:
        raise argparse.ArgumentTypeError(
            f"endpoint name {name!r} is a built-in target's; name it after where it runs, "
            f"e.g. k8s-{name}")
    return name, url


SLO_KEYS = ("p50", "p90", "p95", "p99", "rps", "errors")


def parse_slo(text: str) -> dict[str, float]:
    """``p99=50ms,rps=500,errors=0.1%`` -> {"p99": 50.0, "rps": 500.0, "errors": 0.001}:
    latency in ms (``ms``, ``s`` or a bare number of ms), throughput in requests/s, the
    error budget as a percentage (``0.1%``) or a fraction (``0.001``)."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in SLO_KEYS:
            raise argparse.ArgumentTypeError(
                f"bad SLO part {part!r}: use KEY=VALUE with KEY one of {', '.join(SLO_KEYS)}, "
                f"e.g. p99=50ms,rps=500")
        value = value.strip().lower()
        if key == "errors":
            out[key] = _error_budget(part, value)
            continue
        scale = 1.0
        if key != "rps":
            if value.endswith("ms"):
                value = value[:-2]
            elif value.endswith("s"):
                value, scale = value[:-1], 1000.0
        try:
            number = float(value) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad SLO value in {part!r}") from None
        if not number > 0:
            raise argparse.ArgumentTypeError(f"SLO values must be > 0 ({part!r})")
        out[key] = number
    if not out:
        raise argparse.ArgumentTypeError("empty SLO; e.g. p99=50ms")
    return out


def _error_budget(part: str, value: str) -> float:
    percent = value.endswith("%")
    try:
        number = float(value.rstrip("%")) / (100.0 if percent else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad SLO value in {part!r}: errors=0.1% or "
                                         "errors=0.001") from None
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"the error budget is a share of requests, from 0 "
                                         f"up to (not including) 100% ({part!r})")
    return number


def parse_protocols(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in PROTOCOLS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown protocol {bad[0] if bad else text!r}; "
                                         f"choose from {', '.join(PROTOCOLS)}")
    return tuple(dict.fromkeys(names))


def non_negative_float(text: str) -> float:
    """A number >= 0 (milliseconds and the like), for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0 (got {text!r})")
    return value


def default_out(bundle: str) -> Path:
    return Path("results") / f"{bundle}-{dt.datetime.now():%Y%m%d-%H%M%S}"


def parse_volume(text: str) -> float:
    """Requests a month: ``10M``, ``250k``, ``1.5B``, ``2e7`` or a plain number."""
    value = text.strip().lower().replace(",", "").replace("_", "")
    scale = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9}.get(value[-1:], 1.0)
    if scale != 1.0:
        value = value[:-1]
    try:
        number = float(value) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad volume {text!r}: give requests a month, e.g. 10M, 250k or 2e7") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"the volume must be > 0 (got {text!r})")
    return number

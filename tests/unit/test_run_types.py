"""run.json against its types, key by key: every block a run writes (simulated, for each
catalogue scenario) and every fixture once upgraded holds exactly the keys its TypedDict
declares (reports.schema, reports.stageblocks, reports.runblocks), each of its type.
mypy checks the code that builds and reads the blocks; this checks the files: a key
written but not declared, a required key not written, or a value of another type fails."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import (
    Any,
    Literal,
    NotRequired,
    Required,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

import pytest

from reports.schema import RunDoc, upgrade
from scenarios import catalogue
from tests.unit import runs

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runs"


def problems(value: Any, hint: Any, path: str = "run") -> list[str]:
    """Where ``value`` is not of the type ``hint`` (a TypedDict, list, dict, union...)."""
    origin = get_origin(hint)
    if origin in (NotRequired, Required):
        return problems(value, get_args(hint)[0], path)
    if hint is Any or hint is object:
        return []
    if is_typeddict(hint):
        return _typeddict_problems(value, hint, path)
    if origin in (Union, types.UnionType):
        found = [problems(value, arg, path) for arg in get_args(hint)]
        return [] if any(not f for f in found) else min(found, key=len)
    if origin is Literal:
        return [] if value in get_args(hint) else [f"{path}: {value!r} not in {get_args(hint)}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__}, not a list"]
        return [p for i, v in enumerate(value)
                for p in problems(v, get_args(hint)[0], f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, not a dict"]
        return [p for k, v in value.items() for p in problems(v, get_args(hint)[1], f"{path}.{k}")]
    return [] if _is_scalar(value, hint) else [
        f"{path}: {value!r} is not {getattr(hint, '__name__', hint)}"]


def _is_scalar(value: Any, hint: Any) -> bool:
    if hint is float:  # JSON writes 2.0 as 2 where it can
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def _typeddict_problems(value: Any, hint: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: {type(value).__name__}, not a {hint.__name__}"]
    hints = get_type_hints(hint, include_extras=True)
    # Under postponed annotations NotRequired shows only in the evaluated hints.
    required = {k for k, h in hints.items() if get_origin(h) is Required
                or (hint.__total__ and get_origin(h) is not NotRequired)}
    out = [f"{path}.{k}: missing from {hint.__name__}" for k in sorted(required - value.keys())]
    out += [f"{path}.{k}: not a key of {hint.__name__}"
            for k in sorted(value.keys() - hints.keys())]
    for k, v in value.items():
        if k in hints:
            out += problems(v, hints[k], f"{path}.{k}")
    return out


@pytest.mark.parametrize("name", sorted(catalogue.available()))
def test_a_simulated_run_writes_the_declared_blocks(tmp_path: Path, name: str) -> None:
    runs.simulate_fast_slow(tmp_path, catalogue.load(name))
    doc = json.loads((tmp_path / "run.json").read_text())
    assert problems(doc, RunDoc) == []


def test_a_batched_run_writes_the_declared_blocks(tmp_path: Path) -> None:
    """``run --batching both``: a batched result's stages hold a BatchingBlock each."""
    runs.simulate_batched(tmp_path, catalogue.load("smoke"))
    doc = json.loads((tmp_path / "run.json").read_text())
    assert problems(doc, RunDoc) == []
    batched = doc["targets"][1]
    assert batched["name"] == "fake+batch"
    assert all(s["batching"]["batches"] > 0 for s in batched["stages"])


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_fixture_upgraded_holds_the_declared_blocks(fixture: str) -> None:
    """The fixtures were measured for real (four deployments, Lambda's REPORT summary,
    a timeline): what the simulated runs do not write."""
    doc = upgrade(json.loads((FIXTURES / fixture).read_text()))
    assert problems(doc, RunDoc) == []


def test_the_check_finds_what_does_not_match() -> None:
    doc = upgrade(json.loads((FIXTURES / "digits-4targets.json").read_text()))
    lam = next(t for t in doc["targets"] if t["name"] == "lambda")
    stage: Any = lam["stages"][0]
    stage["windows"][0]["extra"] = 1
    del stage["platform"]["invocations"]
    stage["platform"]["scale_out"]["cold_starts"] = None
    codec: Any = lam.get("codec")
    codec["on_path_ms"] = "fast"
    assert problems(doc, RunDoc) == [
        "run.targets[3].stages[0].windows[0].extra: not a key of WindowResult",
        "run.targets[3].stages[0].platform.invocations: missing from PlatformSummary",
        "run.targets[3].stages[0].platform.scale_out.cold_starts: None is not int",
        "run.targets[3].codec.on_path_ms: 'fast' is not float",
    ]

"""Which results a run measures when it compares wire encodings (``run --encodings``).

With one encoding (``--encoding``, or the bundle's default) every target is one result
named after it, as always. With several (``--encodings json,binary``):

* a deployment whose requests are the codec's HTTP bodies (flask, fastapi, the Lambda
  emulator's Function URL, an ``http://`` endpoint) is measured once per encoding, each its own
  result named ``NAME-ENCODING`` (``flask-json``, ``flask-binary``): its own server
  start, parity check, load, log files and samples;
* gRPC sends protobuf whatever is asked (the tensor as raw float32 bytes plus its shape),
  so a ``grpc`` target or ``grpc://`` endpoint is measured once, recorded as "protobuf";
* in-process has no wire at all: measured once, encoding None;
* a ``lambda://`` endpoint is measured once, in the first encoding listed: its
  direct-invocation events are not the HTTP bodies this comparison is about.

Each result records ``deployment`` (what was deployed: ``flask``) and ``encoding`` (what
its requests were on the wire), so the report groups results by those, not by parsing
names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from targets import registry


@dataclass(frozen=True)
class Measurement:
    #: The result's name: the deployment's, with ``-ENCODING`` when it is measured in
    #: several encodings.
    name: str
    #: What was deployed: a built-in target or an --endpoint name.
    deployment: str
    #: The encoding the target is built with (gRPC and in-process ignore it).
    encoding: str
    #: What its requests are on the wire: "json", "binary", "protobuf"; None in-process.
    wire: str | None


def wire_of(deployment: str, endpoints: Mapping[str, str], encoding: str) -> str | None:
    """What ``deployment``'s requests are on the wire (its registry entry says)."""
    return registry.wire_of(deployment, endpoints.get(deployment)).of(encoding)


def per_encoding(deployment: str, endpoints: Mapping[str, str]) -> bool:
    """Whether ``deployment`` is measured once per encoding when there are several."""
    return registry.wire_of(deployment, endpoints.get(deployment)).per_encoding


def measurements(targets: Sequence[str], endpoints: Mapping[str, str],
                 encodings: Sequence[str]) -> list[Measurement]:
    """The results to measure, in order: each target's encodings together, in the order
    given (``encodings`` holds at least one)."""
    several = len(encodings) > 1
    out = []
    for deployment in targets:
        if several and per_encoding(deployment, endpoints):
            out += [Measurement(f"{deployment}-{e}", deployment, e, e) for e in encodings]
        else:
            out.append(Measurement(deployment, deployment, encodings[0],
                                   wire_of(deployment, endpoints, encodings[0])))
    return out


def find(name: str, targets: Sequence[str], endpoints: Mapping[str, str],
         encodings: Sequence[str]) -> Measurement | None:
    """The measurement a result name stands for (None: not one of this plan's)."""
    return next((m for m in measurements(targets, endpoints, encodings) if m.name == name),
                None)


def duplicates(planned: Sequence[Measurement]) -> list[str]:
    """Result names planned twice (an endpoint named like another target's NAME-ENCODING)."""
    seen: set[str] = set()
    twice = []
    for m in planned:
        if m.name in seen:
            twice.append(m.name)
        seen.add(m.name)
    return twice

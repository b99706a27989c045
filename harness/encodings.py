"""Which results a run measures when it compares wire encodings (``run --encodings``)
and batching (``run --batching``).

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

With ``--batching`` each deployment that can batch (its registry entry's ``batching``:
flask, fastapi, grpc, rayserve) is measured batched, as ``NAME+batch`` after its encoding
(``flask-binary+batch``); with ``--batching both`` also unbatched, as ``NAME``, just before
it. A deployment that cannot batch (in-process, lambda), and every ``--endpoint`` (its
server is not ours to configure), is measured once, unbatched.

Each result records ``deployment`` (what was deployed: ``flask``), ``encoding`` (what
its requests were on the wire) and ``batching`` (its batcher's settings, or None), so the
report groups results by those, not by parsing names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from targets import registry
from targets.batching import BatchingSpec

#: What a batched result's name ends with: ``flask+batch``.
BATCHED_SUFFIX = "+batch"


@dataclass(frozen=True)
class Batching:
    """``run --batching``: the batcher's settings, and whether each batching deployment
    is also measured without it (``both``)."""

    spec: BatchingSpec
    unbatched: bool = False

    def __str__(self) -> str:
        return f"both,{self.spec}" if self.unbatched else str(self.spec)

    def variants(self, deployment: str, endpoints: Mapping[str, str]
                 ) -> list[BatchingSpec | None]:
        """How ``deployment`` is measured: unbatched (None) and/or with the spec."""
        if deployment in endpoints or not registry.can_batch(deployment):
            return [None]
        return [None, self.spec] if self.unbatched else [self.spec]


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
    #: Its server's batcher (a ``NAME+batch`` result); None: unbatched.
    batching: BatchingSpec | None = None


def wire_of(deployment: str, endpoints: Mapping[str, str], encoding: str) -> str | None:
    """What ``deployment``'s requests are on the wire (its registry entry says)."""
    return registry.wire_of(deployment, endpoints.get(deployment)).of(encoding)


def per_encoding(deployment: str, endpoints: Mapping[str, str]) -> bool:
    """Whether ``deployment`` is measured once per encoding when there are several."""
    return registry.wire_of(deployment, endpoints.get(deployment)).per_encoding


def measurements(targets: Sequence[str], endpoints: Mapping[str, str],
                 encodings: Sequence[str], batching: Batching | None = None
                 ) -> list[Measurement]:
    """The results to measure, in order: each target's encodings together, in the order
    given (``encodings`` holds at least one), each unbatched then batched as
    ``batching`` asks."""
    several = len(encodings) > 1
    out = []
    for deployment in targets:
        wires: list[tuple[str, str, str | None]]
        if several and per_encoding(deployment, endpoints):
            wires = [(f"{deployment}-{e}", e, e) for e in encodings]
        else:
            wires = [(deployment, encodings[0], wire_of(deployment, endpoints, encodings[0]))]
        variants = batching.variants(deployment, endpoints) if batching else [None]
        out += [Measurement(name + (BATCHED_SUFFIX if spec else ""), deployment, encoding,
                            wire, spec)
                for name, encoding, wire in wires for spec in variants]
    return out


def unbatchable(targets: Sequence[str], endpoints: Mapping[str, str]) -> list[str]:
    """Those of ``targets`` that ``--batching`` measures unbatched all the same."""
    return [t for t in targets if t in endpoints or not registry.can_batch(t)]


def find(name: str, targets: Sequence[str], endpoints: Mapping[str, str],
         encodings: Sequence[str], batching: Batching | None = None
         ) -> Measurement | None:
    """The measurement a result name stands for (None: not one of this plan's)."""
    return next((m for m in measurements(targets, endpoints, encodings, batching)
                 if m.name == name), None)


def duplicates(planned: Sequence[Measurement]) -> list[str]:
    """Result names planned twice (an endpoint named like another target's NAME-ENCODING)."""
    seen: set[str] = set()
    twice = []
    for m in planned:
        if m.name in seen:
            twice.append(m.name)
        seen.add(m.name)
    return twice

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

With several Lambda memory sizes (``--lambda-memory-mb 512,1769``) the lambda target is
measured once per size, each its own result ``lambda-MB`` (``lambda-512``; with several
encodings too ``lambda-512-json``): its own emulator started with that ``--memory-mb``,
cold starts, stages and log files. An ``--endpoint`` (a ``lambda://`` function included)
is not ours to size: measured once.

With several monitoring modes (``run --monitoring off,metrics,metrics+log``, or a
scenario's ``monitoring`` list) each deployment is measured once per mode, the mode's
suffix last (``flask``, ``flask+metrics``, ``flask+metrics+log``; ``flask+batch+metrics``):
its own server started with those flags. With one mode every result has it and keeps its
name. An ``--endpoint`` is not ours to instrument: measured once, monitoring off.

Each result records ``deployment`` (what was deployed: ``flask``), ``encoding`` (what
its requests were on the wire), ``batching`` (its batcher's settings, or None) and
``monitoring`` (its mode), so the report groups results by those, not by parsing names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from targets import registry
from targets.batching import BatchingSpec
from targets.monitoring import OFF, Monitoring

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
    #: The Lambda memory size it is measured at, when several are (a ``lambda-MB``
    #: result); None: the deployment's own (``--lambda-memory-mb`` or its default).
    memory_mb: int | None = None
    #: What the target is asked to do besides serving (metrics, a prediction log).
    monitoring: Monitoring = OFF


def wire_of(deployment: str, endpoints: Mapping[str, str], encoding: str) -> str | None:
    """What ``deployment``'s requests are on the wire (its registry entry says)."""
    return registry.wire_of(deployment, endpoints.get(deployment)).of(encoding)


def per_encoding(deployment: str, endpoints: Mapping[str, str]) -> bool:
    """Whether ``deployment`` is measured once per encoding when there are several."""
    return registry.wire_of(deployment, endpoints.get(deployment)).per_encoding


def per_memory_size(deployment: str, endpoints: Mapping[str, str]) -> bool:
    """Whether ``deployment`` is measured once per Lambda memory size when there are
    several: a built-in deployment whose options take a memory size (lambda's); never an
    ``--endpoint``, whose size is not ours to set."""
    found = None if deployment in endpoints else registry.find(deployment)
    return found is not None and "memory_mb" in {f.name for f in fields(found.options)}


def monitoring_modes(deployment: str, endpoints: Mapping[str, str],
                     modes: Sequence[Monitoring]) -> list[Monitoring]:
    """The monitoring modes ``deployment`` is measured in: ``modes`` (none: off); an
    ``--endpoint`` only off (its server is not ours to instrument)."""
    if deployment in endpoints or not modes:
        return [OFF]
    return list(modes)


def measurements(targets: Sequence[str], endpoints: Mapping[str, str],
                 encodings: Sequence[str], batching: Batching | None = None,
                 memory_sizes: Sequence[int] = (),
                 modes: Sequence[Monitoring] = ()) -> list[Measurement]:
    """The results to measure, in order: each target's memory sizes (``memory_sizes``,
    when it holds two or more) and within each its encodings together, in the order
    given (``encodings`` holds at least one), each unbatched then batched as
    ``batching`` asks, each of those in every monitoring mode of ``modes`` (suffixed
    when there are two or more)."""
    several = len(encodings) > 1
    suffixed = len(modes) > 1
    out = []
    for deployment in targets:
        sizes: list[tuple[str, int | None]] = [(deployment, None)]
        if len(memory_sizes) > 1 and per_memory_size(deployment, endpoints):
            sizes = [(f"{deployment}-{mb}", mb) for mb in memory_sizes]
        for base, memory_mb in sizes:
            wires: list[tuple[str, str, str | None]]
            if several and per_encoding(deployment, endpoints):
                wires = [(f"{base}-{e}", e, e) for e in encodings]
            else:
                wires = [(base, encodings[0], wire_of(deployment, endpoints, encodings[0]))]
            variants = batching.variants(deployment, endpoints) if batching else [None]
            watched = monitoring_modes(deployment, endpoints, modes)
            out += [Measurement(name + (BATCHED_SUFFIX if spec else "")
                                + (mode.suffix if suffixed else ""), deployment,
                                encoding, wire, spec, memory_mb, mode)
                    for name, encoding, wire in wires for spec in variants
                    for mode in watched]
    return out


def unbatchable(targets: Sequence[str], endpoints: Mapping[str, str]) -> list[str]:
    """Those of ``targets`` that ``--batching`` measures unbatched all the same."""
    return [t for t in targets if t in endpoints or not registry.can_batch(t)]


def find(name: str, targets: Sequence[str], endpoints: Mapping[str, str],
         encodings: Sequence[str], batching: Batching | None = None,
         memory_sizes: Sequence[int] = (), modes: Sequence[Monitoring] = ()
         ) -> Measurement | None:
    """The measurement a result name stands for (None: not one of this plan's)."""
    return next((m for m in measurements(targets, endpoints, encodings, batching,
                                         memory_sizes, modes)
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

"""Run the gRPC target: ``python -m targets.grpc.server --bundle digits --port 50051``.

The same entry point backs ``deploybench serve grpc`` and the container image. A
``grpc.server`` answers ``deploybench.v1.Predictor`` from a thread pool, with the standard
health service (SERVING once the model is loaded) and server reflection. It pins itself
to ``--cpus``; with several workers it forks one server process per worker before gRPC or
torch start, all bound to one port with SO_REUSEPORT (the kernel spreads connections),
each with ``CPUs / workers`` torch threads. With one worker SO_REUSEPORT stays off, so a
port already taken is an error rather than a silent share.

With ``--batching`` each server process builds its :class:`targets.batcher.Batcher` once
it is forked: the sync server's pool threads wait in it (the pool is then at least
``max_batch`` threads), and the aio server awaits it, its event loop free while the
batcher's thread runs the model.

With ``--metrics`` every server process counts its Predict answers by outcome (OK; the
client's INVALID_ARGUMENT or RESOURCE_EXHAUSTED; anything else a server error) and times
them, and the supervising process answers ``GET /metrics`` for all of them on
``--metrics-port`` (:mod:`targets.grpc.metrics`); a message gRPC itself refuses for its
size never reaches the handler and is not counted.

A malformed request gets INVALID_ARGUMENT and one over ``--max-body-bytes`` or
``--max-batch`` RESOURCE_EXHAUSTED, each with a message naming the problem; the server
keeps serving.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from concurrent import futures
from typing import Any

from targets.batcher import worker_batcher
from targets.bundles.protocol import Prediction
from targets.bundles.resolve import get_bundle
from targets.entrypoint import ServerSetup, fork_workers, prepare_server, set_torch_threads
from targets.entrypoint import add_arguments as add_common_arguments
from targets.errors import RequestError
from targets.grpc import predict_pb2
from targets.grpc.decode import decode_predict_request
from targets.grpc.metrics import MetricsServer
from targets.monitor import OK, multiprocess_dir, outcome_of_error, predictor, worker_monitor
from targets.wire import codec

#: Threads in each server's pool, chosen by measurement (docs/methodology.md,
#: *Performance*): with 16 channels on `digits`, 4 served ~15% more than 1 and ~3% more
#: than 2; 8 was no faster alone, with a wider spread of latency. gRPC's request
#: machinery runs in the pool's threads, so a few of them overlap its waits with the
#: model's CPU-bound call.
DEFAULT_THREADS = 4
APIS = ("sync", "aio")
#: The sync server: grpc.aio with the model on its event loop served ~0.78 of it.
DEFAULT_API = "sync"
SERVICE = "deploybench.v1.Predictor"
#: How long in-flight RPCs get to finish on SIGTERM.
GRACE_S = 2.0

# HTTP-like statuses from targets.wire.codec, as gRPC codes (names, resolved lazily).
STATUS_CODES = {400: "INVALID_ARGUMENT", 413: "RESOURCE_EXHAUSTED", 415: "INVALID_ARGUMENT"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser, default_port=50051, default_threads=DEFAULT_THREADS,
                         threads_help="threads in each server's pool (sync API only)")
    parser.add_argument("--api", choices=APIS, default=DEFAULT_API,
                        help=f"gRPC's Python API: sync (a thread pool) or aio (asyncio); "
                             f"default {DEFAULT_API}")


def response_message(predictions: list[Prediction]) -> Any:
    """The PredictResponse for ``predictions`` (the breakdown times this too)."""
    return predict_pb2.PredictResponse(predictions=[
        predict_pb2.Prediction(label=p.label, probabilities=p.probabilities)
        for p in predictions
    ])


class Predictor:
    """The service's logic, shared by the sync and aio servers: the loaded bundle (and
    its batcher under --batching) and the two methods as plain functions (bytes or
    message in, message out). Build it in the server process, after any fork."""

    def __init__(self, bundle_name: str, setup: ServerSetup) -> None:
        limits = setup.limits
        self.bundle = get_bundle(bundle_name)
        self.bundle.load()
        #: --metrics / --log-predictions (None: off); the handlers count the answers.
        self.monitor = worker_monitor(setup.monitoring, self.bundle, setup.prediction_log_dir)
        self.batcher = worker_batcher(self.bundle, setup.batching, setup.batch_log_dir,
                                      self.monitor)
        self._infer = predictor(self.bundle, self.batcher, self.monitor)
        self._decode, self._pb2 = decode_predict_request, predict_pb2
        self._shape, self._limits = self.bundle.input_shape, limits
        self._info = predict_pb2.InfoResponse(bundle=self.bundle.name, pid=os.getpid())

    def predict(self, data: bytes) -> Any:
        """Raises RequestError for the client's mistakes."""
        return response_message(self._infer(self._decode(data, self._shape, self._limits)))

    async def apredict(self, data: bytes) -> Any:
        """:meth:`predict` for the aio server: unbatched, the model runs on the event loop
        (a hop to a thread would only add to a CPU-bound call); batched, the loop awaits
        the batcher."""
        if self.batcher is None:
            return self.predict(data)
        batch = self._decode(data, self._shape, self._limits)
        predictions = await self.batcher.apredict(batch)
        if self.monitor is not None:
            self.monitor.served(batch, predictions)
        return response_message(predictions)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        if self.monitor is not None:  # after the batcher: flushes the prediction log
            self.monitor.close()

    def info(self, request: Any) -> Any:
        return self._info

    def handlers(self, predict: Any, info: Any) -> dict[str, Any]:
        import grpc

        pb2 = self._pb2
        return {
            # Parsed by decode_predict_request, not gRPC: bytes that are no PredictRequest
            # are the client's mistake (INVALID_ARGUMENT), not an INTERNAL error.
            "Predict": grpc.unary_unary_rpc_method_handler(
                predict, request_deserializer=None,
                response_serializer=pb2.PredictResponse.SerializeToString),
            "Info": grpc.unary_unary_rpc_method_handler(
                info, request_deserializer=pb2.InfoRequest.FromString,
                response_serializer=pb2.InfoResponse.SerializeToString),
        }


def _status(exc: Exception) -> tuple[Any, str]:
    """The gRPC status code and message for a failed prediction."""
    import grpc

    if isinstance(exc, RequestError):
        return getattr(grpc.StatusCode, STATUS_CODES.get(exc.status, "INVALID_ARGUMENT")), \
            exc.message
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"  # a bug


def _options(limits: codec.Limits, reuse_port: bool) -> list[tuple[str, int]]:
    return [
        # Larger messages are refused by gRPC itself with RESOURCE_EXHAUSTED.
        ("grpc.max_receive_message_length", limits.max_body_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]


def _bind(server: Any, host: str, port: int) -> None:
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise OSError(f"cannot bind {host}:{port}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot bind {host}:{port} (in use?)")


def build_server(service: Predictor, host: str, port: int, setup: ServerSetup,
                 reuse_port: bool) -> Any:
    """A started sync server of ``service`` (its model loaded), ``setup.threads`` threads
    in its pool; raises OSError when the port is taken."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    limits = setup.limits
    monitor = service.monitor if service.monitor is not None \
        and service.monitor.metrics is not None else None

    def predict(data: bytes, context: Any) -> Any:
        try:
            return service.predict(data)
        except Exception as exc:
            context.abort(*_status(exc))
            raise  # abort() raised already

    clock = time.perf_counter

    def counted(data: bytes, context: Any) -> Any:
        assert monitor is not None
        started = clock()
        try:
            answer = service.predict(data)
        except Exception as exc:
            monitor.answered(outcome_of_error(exc), clock() - started)
            context.abort(*_status(exc))
            raise  # abort() raised already
        monitor.answered(OK, clock() - started)
        return answer

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=setup.threads),
                         options=_options(limits, reuse_port))
    handlers = service.handlers(predict if monitor is None else counted,
                                lambda request, context: service.info(request))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    _bind(server, host, port)
    server.start()
    # The model is loaded: only now does the health service say so.
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server


async def serve_aio(service: Predictor, host: str, port: int, limits: codec.Limits,
                    reuse_port: bool) -> int:
    """The aio server of ``service`` until SIGTERM or SIGINT; unbatched, the model runs
    on the event loop (it is CPU-bound and each server process has its CPU's worth of
    torch threads, so handing it to a thread would only add a hop). Returns the exit
    code."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    monitor = service.monitor if service.monitor is not None \
        and service.monitor.metrics is not None else None

    async def predict(data: bytes, context: Any) -> Any:
        try:
            return await service.apredict(data)
        except Exception as exc:
            await context.abort(*_status(exc))
            raise  # abort() raised already

    clock = time.perf_counter

    async def counted(data: bytes, context: Any) -> Any:
        assert monitor is not None
        started = clock()
        try:
            answer = await service.apredict(data)
        except Exception as exc:
            monitor.answered(outcome_of_error(exc), clock() - started)
            await context.abort(*_status(exc))
            raise  # abort() raised already
        monitor.answered(OK, clock() - started)
        return answer

    async def info(request: Any, context: Any) -> Any:
        return service.info(request)

    server = grpc.aio.server(options=_options(limits, reuse_port))
    handlers = service.handlers(predict if monitor is None else counted, info)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        _bind(server, host, port)
    except OSError as exc:
        print(f"error: {exc}. Choose another --port", file=sys.stderr, flush=True)
        return 1
    await server.start()
    for name in ("", SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: asyncio.ensure_future(server.stop(GRACE_S)))
    print(f"worker {os.getpid()} serving (aio)", file=sys.stderr, flush=True)
    await server.wait_for_termination()
    return 0


def _serve_one(args: argparse.Namespace, setup: ServerSetup, reuse_port: bool) -> int:
    set_torch_threads(setup.torch_threads)
    service = Predictor(args.bundle, setup)
    try:
        return _serve_api(service, args, setup, reuse_port)
    finally:
        service.close()  # the batcher's log flushed before fork_workers' os._exit


def _serve_api(service: Predictor, args: argparse.Namespace, setup: ServerSetup,
               reuse_port: bool) -> int:
    if args.api == "aio":
        return asyncio.run(serve_aio(service, args.host, args.port, setup.limits, reuse_port))
    try:
        server = build_server(service, args.host, args.port, setup, reuse_port)
    except OSError as exc:
        print(f"error: {exc}. Choose another --port", file=sys.stderr, flush=True)
        return 1
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)
        server.stop(GRACE_S)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"worker {os.getpid()} serving", file=sys.stderr, flush=True)
    server.wait_for_termination()
    return 0


def serve(args: argparse.Namespace) -> int:
    if args.metrics and args.metrics_port is None:
        print("error: --metrics: the gRPC server exposes its metrics over HTTP on a side "
              "port: give --metrics-port PORT", file=sys.stderr, flush=True)
        return 2
    setup = prepare_server(args)
    print(setup.banner("grpc", args), file=sys.stderr, flush=True)
    # Before any server process imports prometheus_client; bound now (no thread yet),
    # served from this process once the workers are forked.
    metrics = None
    if multiprocess_dir(setup.monitoring) is not None:
        try:
            metrics = MetricsServer(args.host, args.metrics_port)
        except OSError as exc:
            print(f"error: cannot bind the metrics port {args.host}:{args.metrics_port}: "
                  f"{exc.strerror or exc}. Choose another --metrics-port", file=sys.stderr,
                  flush=True)
            return 1
    if setup.workers == 1:
        if metrics is not None:
            metrics.start()
        try:
            return _serve_one(args, setup, reuse_port=False)
        finally:
            if metrics is not None:
                metrics.stop()

    def serve_one() -> int:
        if metrics is not None:
            metrics.close_in_child()  # the supervisor answers /metrics, not the workers
        return _serve_one(args, setup, reuse_port=True)

    # Several workers: fork them now, before gRPC or torch start threads in this process.
    return fork_workers(setup.workers, serve_one,
                        on_forked=metrics.start if metrics is not None else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m targets.grpc.server", description=__doc__)
    add_arguments(parser)
    return serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""A plain gRPC server of the model, written for comparison only (not part of deploybench).

    python benchmarks/reference/plain_grpc.py --port 50061 --cpus 1 --threads 4

What a competent engineer writes first: a ``grpc.server`` with a thread pool, one unary
method whose request is ``repeated float values`` (a proto3 message, packed) and whose
answer is the label and probabilities, the bundle's own preprocess/predict/postprocess
under ``torch.inference_mode()``. No health service, no reflection, no validation beyond
the shape. ``benchmarks/fidelity.py`` measures deploybench's gRPC target against it with
the same client.
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

from pinned import load_bundle, parser, pin

METHOD = "/plain.Model/Predict"


def messages() -> tuple[Any, Any]:
    """The Input and Output message classes, built from a descriptor (no .proto file)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="plain.proto", package="plain",
                                             syntax="proto3")
    field = descriptor_pb2.FieldDescriptorProto
    inp = fdp.message_type.add(name="Input")
    inp.field.add(name="values", number=1, type=field.TYPE_FLOAT, label=field.LABEL_REPEATED)
    out = fdp.message_type.add(name="Output")
    out.field.add(name="label", number=1, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    out.field.add(name="probabilities", number=2, type=field.TYPE_FLOAT,
                  label=field.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("plain.Input")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("plain.Output")))


def main() -> None:
    options = parser(__doc__)
    options.add_argument("--port", type=int, default=50061)
    options.add_argument("--threads", type=int, default=4)
    options.add_argument("--ready-file", default=None,
                         help="written once the server has the model and is started")
    args = options.parse_args()
    pin(args.cpus)

    import grpc
    import numpy as np
    import torch

    bundle = load_bundle(args.bundle)
    shape = (1, *bundle.input_shape)
    inp, out = messages()

    def predict(request: Any, context: Any) -> Any:
        batch = np.asarray(request.values, dtype=np.float32)
        if batch.size != np.prod(shape):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad shape")
        with torch.inference_mode():
            [answer] = bundle.postprocess(bundle.predict(bundle.preprocess(
                batch.reshape(shape))))
        return out(label=answer.label, probabilities=answer.probabilities)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.threads))
    handler = grpc.unary_unary_rpc_method_handler(
        predict, request_deserializer=inp.FromString,
        response_serializer=out.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "plain.Model", {"Predict": handler}),))
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    if args.ready_file:
        with open(args.ready_file, "w") as ready:
            ready.write("ready\n")
    server.wait_for_termination()


if __name__ == "__main__":
    main()

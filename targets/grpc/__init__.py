"""The gRPC target: a ``grpc.server`` with a thread pool, health checking and reflection.

``predict_pb2*.py`` are generated from ``predict.proto`` by grpcio-tools (``make stubs``);
``tests/unit/test_grpc_stubs.py`` fails when they are stale.
"""

"""The committed gRPC stubs are exactly what grpcio-tools generates from predict.proto."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("predict_pb2.py", "predict_pb2.pyi", "predict_pb2_grpc.py")


def test_stubs_are_not_stale(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools is a dev dependency")
    out = tmp_path / "out"
    (out / "targets" / "grpc").mkdir(parents=True)
    args = ["protoc", f"-I{ROOT}", f"--python_out={out}", f"--grpc_python_out={out}",
            f"--pyi_out={out}", str(ROOT / "targets" / "grpc" / "predict.proto")]
    assert protoc.main(args) == 0
    for name in GENERATED:
        fresh = (out / "targets" / "grpc" / name).read_bytes()
        committed = (ROOT / "targets" / "grpc" / name).read_bytes()
        assert fresh == committed, f"{name} is stale: run `make stubs` and commit the result"

"""Regenerate the betterproto code in `protos/` (run `python -m protos.generate`).

`laas/v1/logs.proto` is compiled with grpcio-tools' protoc, twice: through betterproto's plugin
(the messages the code works with) and to `laas/v1/logs_pb2.py` (the C-backed `protobuf` classes
the ingest hot path parses and serializes with; betterproto is ~100x slower per record).
The betterproto module of laas.v1 is written into the client package, `laas_client/v1.py`
(app/client/): the one definition the server (`protos.laas.v1` re-exports it) and the client a
user installs on its own share.
The OpenTelemetry schema is not vendored as .proto text: its file descriptors are taken from
the `opentelemetry-proto` package (the version pinned by the test extra), so the generated
`protos.opentelemetry...` modules match exactly what the OpenTelemetry SDK puts on the wire.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLIENT_V1 = HERE.parent / "app" / "client" / "laas_client" / "v1.py"
LAAS_PROTOS = ["laas/v1/logs.proto"]
# protobuf (upb) classes only, no betterproto: Loki's push API (web/ingest_loki.py)
PB2_ONLY_PROTOS = ["loki/push.proto"]
OTEL_MODULES = [
    "opentelemetry.proto.common.v1.common_pb2",
    "opentelemetry.proto.resource.v1.resource_pb2",
    "opentelemetry.proto.logs.v1.logs_pb2",
    "opentelemetry.proto.collector.logs.v1.logs_service_pb2",
]


def _laas_descriptors() -> list[bytes]:
    import grpc_tools
    from google.protobuf import descriptor_pb2

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.bin"
        cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}", f"-I{include}",
               f"--descriptor_set_out={out}", "--include_imports", "--include_source_info",
               *LAAS_PROTOS]
        subprocess.run(cmd, check=True, cwd=HERE)
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return [f.SerializeToString() for f in fds.file]


def _laas_pb2() -> list[Path]:
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}", f"-I{include}",
           f"--python_out={HERE}", f"--pyi_out={HERE}", *LAAS_PROTOS, *PB2_ONLY_PROTOS]
    subprocess.run(cmd, check=True, cwd=HERE)
    return [HERE / p.replace(".proto", f"_pb2.{ext}") for p in LAAS_PROTOS + PB2_ONLY_PROTOS
            for ext in ("py", "pyi")]


def _otel_descriptors() -> list[bytes]:
    return [importlib.import_module(m).DESCRIPTOR.serialized_pb for m in OTEL_MODULES]


def generate() -> list[Path]:
    """Write the generated packages under `protos/`; return the written paths."""
    from betterproto.lib.google.protobuf import FileDescriptorProto
    from betterproto.lib.google.protobuf.compiler import CodeGeneratorRequest
    from betterproto.plugin.models import monkey_patch_oneof_index
    from betterproto.plugin.parser import generate_code

    monkey_patch_oneof_index()
    files = [FileDescriptorProto().parse(b) for b in _laas_descriptors() + _otel_descriptors()]
    request = CodeGeneratorRequest(
        file_to_generate=[f.name for f in files if f.package != "google.protobuf"],
        proto_file=files,
    )
    written = _laas_pb2()
    for out in generate_code(request).file:
        if out.name == "__init__.py":
            continue  # protos/ itself is a hand-written package
        # protos/laas/v1/__init__.py is hand-written too: it re-exports laas_client.v1
        path = CLIENT_V1 if out.name == "laas/v1/__init__.py" else HERE / out.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(out.content)
        written.append(path)
    # Intermediate packages betterproto leaves without an __init__.py.
    for path in list(written):
        if HERE not in path.parents:
            continue
        for parent in path.parents:
            if parent == HERE:
                break
            init = parent / "__init__.py"
            if not init.exists():
                init.write_text("")
                written.append(init)
    return written


if __name__ == "__main__":
    for p in generate():
        print(p.relative_to(HERE.parent))

#!/usr/bin/env python3
"""Checks a running tessera server from Python, the way a team in another language
would use Tessera: it generates client code from proto/ with grpcio-tools, then checks
health, lists the services through reflection v1alpha (what grpcio-reflection
speaks), and expects UNIMPLEMENTED, with an ErrorInfo, from an unimplemented RPC.

Usage: check_server.py HOST:PORT PROTO_DIR
Exits 0 when every check passes; otherwise prints the failed check and exits 1.
"""

import importlib
import pathlib
import sys
import tempfile

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status
from grpc_tools import protoc

SERVICES = {
    "tessera.v1.IdentityService",
    "tessera.v1.PatientViewService",
    "tessera.v1.SourceAdapterService",
}


def generate(proto_dir: pathlib.Path, out_dir: pathlib.Path) -> None:
    """Generates Python modules for tessera/v1 with grpcio-tools, unchanged protos."""
    wellknown = pathlib.Path(protoc.__file__).parent / "_proto"
    sources = sorted(str(p.relative_to(proto_dir)) for p in (proto_dir / "tessera" / "v1").glob("*.proto"))
    args = [
        "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"-I{proto_dir / 'third_party'}",
        f"-I{wellknown}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"grpcio-tools failed to compile {sources}")


def check(condition: bool, what: str) -> None:
    if not condition:
        print(f"FAIL: {what}", file=sys.stderr)
        raise SystemExit(1)
    print(f"ok: {what}")


def main() -> None:
    target, proto_dir = sys.argv[1], pathlib.Path(sys.argv[2]).resolve()
    with tempfile.TemporaryDirectory() as out:
        generate(proto_dir, pathlib.Path(out))
        sys.path.insert(0, out)
        identity_pb2 = importlib.import_module("tessera.v1.identity_pb2")
        common_pb2 = importlib.import_module("tessera.v1.common_pb2")
        identity_grpc = importlib.import_module("tessera.v1.identity_pb2_grpc")

        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)

            health = health_pb2_grpc.HealthStub(channel)
            for service in ["", *sorted(SERVICES)]:
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                check(
                    reply.status == health_pb2.HealthCheckResponse.SERVING,
                    f"health of {service or 'the server'} is SERVING",
                )

            listed = set(ProtoReflectionDescriptorDatabase(channel).get_services())
            check(SERVICES <= listed, f"reflection v1alpha lists the services (got {sorted(listed)})")

            stub = identity_grpc.IdentityServiceStub(channel)
            request = identity_pb2.ResolveRecordRequest(
                source_record=common_pb2.SourceRecordKey(system="ehr", local_id="p-1")
            )
            try:
                stub.ResolveRecord(request, timeout=5)
                check(False, "ResolveRecord answers UNIMPLEMENTED")
            except grpc.RpcError as err:
                check(err.code() == grpc.StatusCode.UNIMPLEMENTED, f"ResolveRecord answers UNIMPLEMENTED (got {err.code()})")
                check("identity resolver" in err.details(), f"the message names what is missing: {err.details()!r}")
                status = rpc_status.from_call(err)
                reasons = []
                for detail in status.details if status else []:
                    info = error_details_pb2.ErrorInfo()
                    if detail.Unpack(info):
                        reasons.append(info.reason)
                check(reasons == ["NOT_IMPLEMENTED"], f"the status carries ErrorInfo NOT_IMPLEMENTED (got {reasons})")

            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            check(reply.status == health_pb2.HealthCheckResponse.SERVING, "the server still serves afterwards")


if __name__ == "__main__":
    main()

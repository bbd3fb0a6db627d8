#!/usr/bin/env python3
"""Reads a patient view from a running tessera server over mutual TLS, from Python, as a
team in another language would: grpcio with a client certificate from `tessera
dev-certs`, client code generated from proto/ with grpcio-tools.

Usage: secure_client.py PORT PROTO_DIR CERTS_DIR
The server must listen on 127.0.0.1:PORT with the dev server certificate (valid for
localhost), require client certificates from the dev CA, and grant `steward`
(HOPERAT), `reader` (TREAT) and `marketing` (HMARKT only), as the end-to-end test's
config does. Prints one `ok:` line per check and exits 0 when every check passes;
prints the failed check and exits 1 otherwise. It makes exactly CALLS calls that reach
the server's handlers or its policy (the handshake without a certificate does not).
"""

import importlib
import pathlib
import sys
import tempfile

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from check_server import check, generate

CALLS = 6


def credentials(certs: pathlib.Path, caller: str | None) -> grpc.ChannelCredentials:
    ca = (certs / "ca.pem").read_bytes()
    if caller is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=(certs / f"{caller}.key").read_bytes(),
        certificate_chain=(certs / f"{caller}.pem").read_bytes(),
    )


def reason(err: grpc.RpcError) -> str | None:
    status = rpc_status.from_call(err)
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return None


def main() -> None:
    port, proto_dir, certs = sys.argv[1], pathlib.Path(sys.argv[2]).resolve(), pathlib.Path(sys.argv[3])
    target = f"localhost:{port}"
    with tempfile.TemporaryDirectory() as out:
        generate(proto_dir, pathlib.Path(out))
        sys.path.insert(0, out)
        common = importlib.import_module("tessera.v1.common_pb2")
        identity = importlib.import_module("tessera.v1.identity_pb2")
        identity_grpc = importlib.import_module("tessera.v1.identity_pb2_grpc")
        view = importlib.import_module("tessera.v1.patient_view_pb2")
        view_grpc = importlib.import_module("tessera.v1.patient_view_pb2_grpc")
        record = common.SourceRecordKey(system="ehr", local_id="MRN-PY-1")

        # 1. The steward files the person's EHR and CRM records (one master).
        person = common.Demographics(
            given_names=["Ottoline"], family_name="Brackwater", birth_date="1958-06-30",
            phones=["(608) 555-0142"],
        )
        masters = set()
        with grpc.secure_channel(target, credentials(certs, "steward")) as channel:
            stub = identity_grpc.IdentityServiceStub(channel)
            for n, key in enumerate([record, common.SourceRecordKey(system="crm", local_id="C-PY-1")]):
                reply = stub.UpsertSourceRecord(
                    identity.UpsertSourceRecordRequest(
                        source_record=common.SourceRecord(key=key, demographics=person),
                        request_id=f"5c1a4d1e-0000-4000-8000-00000000000{n + 1}",
                    ),
                    timeout=10,
                )
                masters.add(reply.master)
            check(len(masters) == 1 and masters.pop().startswith("masters/"),
                  "the steward files two records of one person over mTLS")

        with grpc.secure_channel(target, credentials(certs, "reader")) as channel:
            # 2. The reader reads its view for treatment.
            subject = view.PatientSubject(source_record=record)
            reply = view_grpc.PatientViewServiceStub(channel).GetPatientView(
                view.GetPatientViewRequest(subject=subject, purpose=view.PURPOSE_OF_USE_TREATMENT),
                timeout=10,
            )
            sections = {name for name, section in reply.sections.items() if section.records}
            check("encounters" in sections, f"the reader's view has the EHR's encounters (got {sorted(sections)})")
            # 3. A reader may not merge.
            try:
                identity_grpc.IdentityServiceStub(channel).MergeMasters(
                    identity.MergeMastersRequest(), timeout=10
                )
                check(False, "a reader's MergeMasters is refused")
            except grpc.RpcError as err:
                check(
                    err.code() == grpc.StatusCode.PERMISSION_DENIED and reason(err) == "RPC_NOT_ALLOWED",
                    f"a reader's MergeMasters is PERMISSION_DENIED/RPC_NOT_ALLOWED (got {err.code()}, {reason(err)})",
                )

        with grpc.secure_channel(target, credentials(certs, "marketing")) as channel:
            stub = view_grpc.PatientViewServiceStub(channel)
            # 4. Marketing may not read for treatment.
            try:
                stub.GetPatientView(
                    view.GetPatientViewRequest(subject=subject, purpose=view.PURPOSE_OF_USE_TREATMENT),
                    timeout=10,
                )
                check(False, "marketing's treatment view is refused")
            except grpc.RpcError as err:
                check(
                    err.code() == grpc.StatusCode.PERMISSION_DENIED and reason(err) == "PURPOSE_NOT_GRANTED",
                    f"marketing's treatment view is PERMISSION_DENIED/PURPOSE_NOT_GRANTED (got {err.code()}, {reason(err)})",
                )
            # 5. Marketing's own purpose: no clinical section in its view.
            reply = stub.GetPatientView(
                view.GetPatientViewRequest(subject=subject, purpose=view.PURPOSE_OF_USE_MARKETING),
                timeout=10,
            )
            served = {name for name, section in reply.sections.items() if section.records}
            check(served == {"cases"}, f"marketing's own view has its CRM cases and no clinical section (got {sorted(served)})")
            systems = {r.system for r in reply.identities.source_records}
            check(systems == {"crm"}, f"marketing sees only the CRM identity (got {sorted(systems)})")

        # No client certificate: the handshake itself is refused.
        with grpc.secure_channel(target, credentials(certs, None)) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=5)
                identity_grpc.IdentityServiceStub(channel).GetMaster(
                    identity.GetMasterRequest(name="masters/1"), timeout=5
                )
                check(False, "a client without a certificate is refused")
            except (grpc.RpcError, grpc.FutureTimeoutError):
                check(True, "a client without a certificate is refused")


if __name__ == "__main__":
    main()

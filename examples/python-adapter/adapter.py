#!/usr/bin/env python3
"""A Tessera source adapter written in Python: a small CSV-backed marketing silo
(contacts, consents and channel preferences) served over SourceAdapterService, the
gRPC protocol Tessera's `grpc` adapter kind speaks.

Usage:
    adapter.py [--listen ADDR] [--data DIR] [--proto-dir DIR]
               [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]

ADDR is HOST:PORT (`127.0.0.1:0` picks a free port) or `unix:PATH` for a Unix
domain socket. Once serving, the adapter prints `listening on ADDR` (with the port
it got) on one line of standard output. SIGTERM or Ctrl-C stops it gracefully.

With `--tls-cert` and `--tls-key` (or the environment variables
`ADAPTER_TLS_CERT` and `ADAPTER_TLS_KEY`) it serves TCP over TLS; with
`--tls-client-ca` (`ADAPTER_TLS_CLIENT_CA`) too, it requires a client certificate
from that CA (mutual TLS), which is how Tessera's `grpc` adapter proves who it is.

Code for the protocol is generated from Tessera's `proto/` with grpcio-tools at
start (a fraction of a second), so the adapter always matches the contract it is
run against. Copy this file and replace `Silo` with your own data access.

Three options exist for Tessera's own tests and are of no use in production:
`--stall` makes every fetch wait until Tessera gives up (a stuck silo),
`--fetch-delay SECONDS` makes every fetch take that long before it answers (a slow
silo, so that a test can catch a fetch in progress), and `--in-flight-file FILE`
keeps FILE updated with the number of fetches running and the time remaining that
the last one was given (its gRPC deadline).
"""

import argparse
import csv
import datetime
import importlib
import json
import os
import pathlib
import signal
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc
from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
SYSTEM = "marketing"
VERSION = "csv-marketing/1.0.0"
MAX_BATCH = 100

SECTIONS = {
    "contacts": "Contact details the marketing system holds",
    "consents": "Marketing consents by purpose and channel: granted, denied or withdrawn",
    "channel_preferences": "Channel preferences: opted in or out, and how often",
}
CONSENT_STATUSES = {"granted", "denied", "withdrawn"}
SEXES = {"male": 1, "female": 2, "other": 3, "unknown": 4}


def generate(proto_dir: pathlib.Path, out_dir: pathlib.Path) -> None:
    """Generates Python modules for tessera/v1 with grpcio-tools."""
    wellknown = pathlib.Path(protoc.__file__).parent / "_proto"
    sources = sorted(
        str(p.relative_to(proto_dir)) for p in (proto_dir / "tessera" / "v1").glob("*.proto")
    )
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


class Malformed(Exception):
    """A row the silo holds that cannot be served; skipped and counted."""


def timestamp(text: str) -> datetime.datetime:
    """An RFC 3339 time, or Malformed (never quoting the value)."""
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Malformed("a time does not parse") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def read_csv(path: pathlib.Path) -> list:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def contact_record(row):
    record = {k: row[k] for k in ("given_names", "family_name", "email", "phone", "city", "postal_code") if row[k]}
    return row["contact_id"], record, timestamp(row["updated_at"])


def consent_record(row):
    if row["status"] not in CONSENT_STATUSES:
        raise Malformed("unknown consent status")
    recorded = timestamp(row["recorded_at"])
    record = {
        "purpose": row["purpose"],
        "channel": row["channel"],
        "status": row["status"],
        "recorded_at": recorded.isoformat(),
    }
    return row["consent_id"], record, recorded


def preference_record(row):
    if row["opted_in"] not in ("true", "false"):
        raise Malformed("opted_in is not true or false")
    updated = timestamp(row["updated_at"])
    record = {
        "channel": row["channel"],
        "opted_in": row["opted_in"] == "true",
        "frequency": row["frequency"],
    }
    return f"{row['contact_id']}/{row['channel']}", record, updated


# How each section's rows become records: (record_id, JSON object, update time).
READERS = {
    "contacts": contact_record,
    "consents": consent_record,
    "channel_preferences": preference_record,
}


class Silo:
    """The marketing data: three CSV files, read once at start."""

    def __init__(self, data_dir: pathlib.Path):
        self.contacts = {row["contact_id"]: row for row in read_csv(data_dir / "contacts.csv")}
        self.rows = {"contacts": {}, "consents": {}, "channel_preferences": {}}
        for row in self.contacts.values():
            self.rows["contacts"][row["contact_id"]] = [row]
        for section, file in (("consents", "consents.csv"), ("channel_preferences", "channel_preferences.csv")):
            for row in read_csv(data_dir / file):
                self.rows[section].setdefault(row["contact_id"], []).append(row)

    def records(self, section: str, contact_id: str):
        """The (record_id, JSON object, update time) of one contact's rows in a
        section, and how many rows were malformed. KeyError if the contact is unknown."""
        if contact_id not in self.contacts:
            raise KeyError("no such contact")
        records, skipped = [], 0
        for row in self.rows[section].get(contact_id, []):
            try:
                records.append(READERS[section](row))
            except Malformed:
                skipped += 1
        return records, skipped


class InFlight:
    """Counts running fetches; with a file, keeps it updated (for tests)."""

    def __init__(self, path):
        self.path, self.count, self.last_remaining = path, 0, None
        self.lock = threading.Lock()
        self._write()

    def enter(self, remaining):
        with self.lock:
            self.count += 1
            self.last_remaining = remaining
            self._write()

    def leave(self):
        with self.lock:
            self.count -= 1
            self._write()

    def _write(self):
        if not self.path:
            return
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"in_flight": self.count, "last_time_remaining": self.last_remaining}, f)
        os.replace(tmp, self.path)


def make_servicer(pb, pb_grpc, common_pb, silo, stall, delay, in_flight):
    from google.protobuf import duration_pb2, timestamp_pb2

    def ts(value: datetime.datetime):
        out = timestamp_pb2.Timestamp()
        out.FromDatetime(value.astimezone(datetime.timezone.utc).replace(tzinfo=None))
        return out

    class Servicer(pb_grpc.SourceAdapterServiceServicer):
        def DescribeAdapter(self, request, context):
            return pb.DescribeAdapterResponse(
                system=SYSTEM,
                sections=[
                    pb.SectionDescriptor(
                        name=name,
                        media_type="application/json",
                        description=text,
                        suggested_ttl=duration_pb2.Duration(seconds=300),
                    )
                    for name, text in SECTIONS.items()
                ],
                capabilities=pb.AdapterCapabilities(
                    batch_fetch=True,
                    max_batch_size=MAX_BATCH,
                    identity_feed=True,
                    incremental_identity_feed=True,
                ),
                adapter_version=VERSION,
            )

        def FetchRecords(self, request, context):
            in_flight.enter(context.time_remaining())
            try:
                if stall or delay:
                    # A stuck (or slow) silo: waits until Tessera cancels the call, or
                    # gives up just before the deadline, as an adapter should.
                    until = None if stall else time.monotonic() + delay
                    while context.is_active() and (until is None or time.monotonic() < until):
                        remaining = context.time_remaining()
                        if remaining is not None and remaining < 0.01:
                            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the silo did not answer in time")
                        time.sleep(0.001)
                    if stall or not context.is_active():
                        return pb.FetchRecordsResponse()
                if len(request.local_ids) > MAX_BATCH:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_BATCH} local IDs per call")
                results = [
                    self.result(local_id, section)
                    for local_id in request.local_ids
                    for section in request.sections
                ]
                return pb.FetchRecordsResponse(results=results)
            finally:
                in_flight.leave()

        @staticmethod
        def result(local_id, section):
            out = pb.FetchResult(local_id=local_id, section=section)
            if section not in SECTIONS:
                out.error.kind = pb.FETCH_ERROR_KIND_UNKNOWN_SECTION
                out.error.message = "unknown section"
                return out
            try:
                records, skipped = silo.records(section, local_id)
            except KeyError:
                # The message names no ID: errors never carry patient data.
                out.error.kind = pb.FETCH_ERROR_KIND_NOT_FOUND
                out.error.message = "no such contact"
                return out
            out.skipped_malformed = skipped
            for record_id, record, updated in records:
                out.records.add(
                    record_id=record_id,
                    json=json.dumps(record, separators=(",", ":")),
                    update_time=ts(updated),
                )
            return out

        def CheckAdapterHealth(self, request, context):
            return pb.CheckAdapterHealthResponse(
                health=pb.ADAPTER_HEALTH_SERVING,
                message=f"{len(silo.contacts)} contacts loaded",
            )

        def StreamSourceRecords(self, request, context):
            since = None
            if request.HasField("updated_since"):
                since = request.updated_since.ToDatetime(tzinfo=datetime.timezone.utc)
            for contact_id in sorted(silo.contacts):
                if not context.is_active():
                    return
                if request.resume_token and contact_id <= request.resume_token:
                    continue
                row = silo.contacts[contact_id]
                try:
                    updated = timestamp(row["updated_at"])
                except Malformed:
                    continue
                if since is not None and updated < since:
                    continue
                yield pb.StreamSourceRecordsResponse(
                    local_id=contact_id,
                    demographics=common_pb.Demographics(
                        given_names=row["given_names"].split(),
                        family_name=row["family_name"],
                        birth_date=row["birth_date"],
                        sex=SEXES.get(row["sex"], 0),
                        emails=[row["email"]] if row["email"] else [],
                        phones=[row["phone"]] if row["phone"] else [],
                        addresses=[common_pb.PostalAddress(city=row["city"], postal_code=row["postal_code"])],
                    ),
                    update_time=ts(updated),
                    resume_token=contact_id,
                )

    return Servicer()


def server_credentials(parser, args):
    """TLS credentials from the --tls-* options, or None to serve plaintext."""
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            parser.error("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        parser.error("--tls-cert and --tls-key go together")
    if args.listen.startswith("unix:"):
        parser.error("TLS is for TCP listeners; a Unix socket is protected by its file mode")
    key = pathlib.Path(args.tls_key).read_bytes()
    chain = pathlib.Path(args.tls_cert).read_bytes()
    client_ca = None
    if args.tls_client_ca is not None:
        client_ca = pathlib.Path(args.tls_client_ca).read_bytes()
    return grpc.ssl_server_credentials(
        [(key, chain)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:50061", help="HOST:PORT or unix:PATH")
    parser.add_argument("--data", type=pathlib.Path, default=HERE / "data", help="the CSV directory")
    parser.add_argument("--proto-dir", type=pathlib.Path, default=HERE.parent.parent / "proto")
    parser.add_argument(
        "--tls-cert",
        default=os.environ.get("ADAPTER_TLS_CERT"),
        help="serve TLS with this certificate chain (PEM); env ADAPTER_TLS_CERT",
    )
    parser.add_argument(
        "--tls-key",
        default=os.environ.get("ADAPTER_TLS_KEY"),
        help="the certificate's private key (PEM); env ADAPTER_TLS_KEY",
    )
    parser.add_argument(
        "--tls-client-ca",
        default=os.environ.get("ADAPTER_TLS_CLIENT_CA"),
        help="require client certificates from this CA (PEM): mutual TLS; "
        "env ADAPTER_TLS_CLIENT_CA",
    )
    parser.add_argument("--stall", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fetch-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--in-flight-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    credentials = server_credentials(parser, args)

    generated = tempfile.TemporaryDirectory(prefix="tessera-proto-")
    generate(args.proto_dir.resolve(), pathlib.Path(generated.name))
    sys.path.insert(0, generated.name)
    pb = importlib.import_module("tessera.v1.adapter_pb2")
    pb_grpc = importlib.import_module("tessera.v1.adapter_pb2_grpc")
    common_pb = importlib.import_module("tessera.v1.common_pb2")

    silo = Silo(args.data)
    servicer = make_servicer(
        pb, pb_grpc, common_pb, silo, args.stall, args.fetch_delay, InFlight(args.in_flight_file)
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_SourceAdapterServiceServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port(args.listen)
    else:
        port = server.add_secure_port(args.listen, credentials)
    if port == 0:
        raise SystemExit(f"cannot listen on {args.listen}")
    server.start()
    address = args.listen
    if not address.startswith("unix:") and address.rsplit(":", 1)[1] == "0":
        address = f"{address.rsplit(':', 1)[0]}:{port}"
    print(f"listening on {address}", flush=True)

    stopped = threading.Event()

    def stop(signum, frame):
        server.stop(grace=2).wait()
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stopped.wait()
    generated.cleanup()


if __name__ == "__main__":
    main()

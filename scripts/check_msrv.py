"""Reads `cargo metadata` on stdin; fails when a dependency needs a newer Rust than ours."""
import json
import sys


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members}
if len(ours) != 1 or None in ours:
    sys.exit(f"check-msrv: every workspace crate must inherit one rust-version, found {sorted(map(str, ours))}")
msrv = ours.pop()
too_new = sorted(
    "{} {} needs Rust {}".format(p["name"], p["version"], p["rust_version"])
    for p in meta["packages"]
    if p["id"] not in members and p.get("rust_version") and version(p["rust_version"]) > version(msrv)
)
if too_new:
    print(f"check-msrv: rust-version is {msrv}, but:", *too_new, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"check-msrv: every dependency builds with Rust {msrv}")

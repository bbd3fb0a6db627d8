//! The guard: a tiny `sh` process that owns a server from `initdb` on, and ends it with
//! the test process.
//!
//! The test process holds the only write end of the guard's stdin pipe (Rust opens
//! pipes close-on-exec, so no other child inherits it). When that end closes — the
//! [`TestPostgres`](crate::TestPostgres) is dropped, or the test process exits, panics,
//! aborts or is killed, statics or not — the kernel closes it and the guard's `read`
//! sees end of file. The guard then asks the server for a fast shutdown (SIGINT, repeated
//! until it exits, in case it was still in `initdb`), waits for it, and removes the
//! server's directory. Terminal signals (Ctrl-C reaches the whole process group) are
//! ignored by the guard, which keeps its job of cleaning up; postgres and initdb install
//! their own handlers and stop on them. If the guard itself is SIGKILLed,
//! `setpriv --pdeathsig` has the kernel stop postgres.
//!
//! While the server runs, `$base/exited` is absent; when it exits for any reason, the
//! guard writes its exit status there, which is how the starter notices a server that
//! failed to start.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::Error;

/// `sh -c GUARD guard BASE LOG PROGRAM ARGS...`
const GUARD: &str = r#"
set -u
base=$1 log=$2
shift 2
# Only the end of our stdin tells us to stop.
trap '' INT TERM HUP
exec 3<&0 </dev/null
"$@" 3<&- >>"$log" 2>&1 &
pg=$!
# The watcher: at end of file, SIGINT the server until it has exited.
{
  while read -r _; do :; done
  while [ ! -e "$base/exited" ] && kill -INT "$pg" 2>/dev/null; do sleep 0.1; done
} <&3 &
watcher=$!
exec 3<&-
wait "$pg"
status=$?
echo "$status" >"$base/exited"
# Keep the directory (and the log in it) until the test process lets go.
wait "$watcher"
rm -rf "$base"
exit "$status"
"#;

/// `sh -c INIT_AND_RUN init INITDB POSTGRES DATA_DIR SOCKET_DIR SUPERUSER SETTINGS...`:
/// the server, as the guard runs it. `exec` makes the postmaster the process the guard
/// signals.
pub(crate) const INIT_AND_RUN: &str = r#"
set -eu
initdb=$1 postgres=$2 data=$3 socket=$4 superuser=$5
shift 5
"$initdb" --pgdata="$data" --username="$superuser" --auth=trust \
    --encoding=UTF8 --locale=C --no-sync --no-instructions >/dev/null
exec "$postgres" -D "$data" -k "$socket" "$@"
"#;

/// Spawns the guard, which runs `server` (a command with its program and arguments),
/// writing its output to `log`. The returned child's stdin is the pipe whose closing
/// stops everything.
pub(crate) fn spawn(base: &Path, log: &Path, server: &Command) -> Result<Child, Error> {
    Command::new("sh")
        .args(["-c", GUARD, "tessera-test-postgres-guard"])
        .arg(base)
        .arg(log)
        .arg(server.get_program())
        .args(server.get_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io("starting the server's guard (sh)", e))
}

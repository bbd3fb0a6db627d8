//! The guard: a tiny `sh` process that owns a server from `mariadb-install-db` on,
//! and ends it with the test process. The same design as `tessera-test-postgres`'s
//! guard, with MariaDB's shutdown signal (SIGTERM).
//!
//! The test process holds the only write end of the guard's stdin pipe (Rust opens
//! pipes close-on-exec, so no other child inherits it). When that end closes — the
//! [`TestMariaDb`](crate::TestMariaDb) is dropped, or the test process exits, panics,
//! aborts or is killed, statics or not — the kernel closes it and the guard's `read`
//! sees end of file. The guard then asks the server to shut down (SIGTERM, repeated
//! until it exits, in case it was still in `mariadb-install-db`), waits for it, and
//! removes the server's directory. Terminal signals are ignored by the guard itself,
//! which keeps its job of cleaning up; the server gets the default dispositions back.
//! If the guard itself is SIGKILLed, `setpriv --pdeathsig` has the kernel stop the
//! server.
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
( trap - INT TERM HUP; exec "$@" ) 3<&- >>"$log" 2>&1 &
server=$!
# The watcher: at end of file, SIGTERM the server until it has exited.
{
  while read -r _; do :; done
  while [ ! -e "$base/exited" ] && kill -TERM "$server" 2>/dev/null; do sleep 0.1; done
} <&3 &
watcher=$!
exec 3<&-
wait "$server"
status=$?
echo "$status" >"$base/exited"
# Keep the directory (and the log in it) until the test process lets go.
wait "$watcher"
rm -rf "$base"
exit "$status"
"#;

/// `sh -c INIT_AND_RUN init INSTALL_DB MARIADBD DATA_DIR SOCKET SETTINGS...`: the
/// server, as the guard runs it. `exec` makes mariadbd the process the guard signals.
/// Root (over the socket only) has no password.
pub(crate) const INIT_AND_RUN: &str = r#"
set -eu
install_db=$1 mariadbd=$2 data=$3 socket=$4
shift 4
"$install_db" --no-defaults --datadir="$data" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve >/dev/null
exec "$mariadbd" --no-defaults --datadir="$data" --socket="$socket" "$@"
"#;

/// Spawns the guard, which runs `server` (a command with its program and arguments),
/// writing its output to `log`. The returned child's stdin is the pipe whose closing
/// stops everything.
pub(crate) fn spawn(base: &Path, log: &Path, server: &Command) -> Result<Child, Error> {
    Command::new("sh")
        .args(["-c", GUARD, "tessera-test-mariadb-guard"])
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

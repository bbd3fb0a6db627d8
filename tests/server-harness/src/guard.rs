//! The guard: a tiny `sh` process that owns a server from its initialisation on, and
//! ends it with the test process.
//!
//! The test process holds the only write end of the guard's stdin pipe (Rust opens
//! pipes close-on-exec, so no other child inherits it). When that end closes — the
//! [`Guard`] is dropped, or the test process exits, panics, aborts or is killed, statics
//! or not — the guard's `read` sees end of file. It then sends the server its
//! [shutdown signal](crate::Spec::shutdown_signal), repeated until it exits (in case
//! it was still initialising), waits for it, and removes the server's directory.
//! Terminal signals (Ctrl-C reaches the whole process group) are ignored by the guard,
//! which keeps its job of cleaning up; the server gets SIGTERM's and SIGHUP's default
//! dispositions back (SIGINT stays ignored, as for any background job: servers install
//! their own handlers). If the guard itself is SIGKILLed, `setpriv --pdeathsig` has the
//! kernel stop the server.
//!
//! While the server runs, `$base/exited` is absent; when it exits for any reason, the
//! guard writes its exit status there, which is how the starter notices a server that
//! failed to start.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Instant;

use crate::{Error, Spec};

/// `sh -c GUARD NAME BASE LOG SIGNAL PROGRAM ARGS...`
const GUARD: &str = r#"
set -u
base=$1 log=$2 signal=$3
shift 3
# Only the end of our stdin tells us to stop.
trap '' INT TERM HUP
exec 3<&0 </dev/null
( trap - INT TERM HUP; exec "$@" ) 3<&- >>"$log" 2>&1 &
server=$!
# The watcher: at end of file, signal the server until it has exited.
{
  while read -r _; do :; done
  while [ ! -e "$base/exited" ] && kill -"$signal" "$server" 2>/dev/null; do sleep 0.1; done
} <&3 &
watcher=$!
exec 3<&-
wait "$server"
status=$?
# Written whole, then renamed: a reader never sees the file empty.
echo "$status" >"$base/exited.tmp" && mv "$base/exited.tmp" "$base/exited"
# Keep the directory (and the log in it) until the test process lets go.
wait "$watcher"
rm -rf "$base"
exit "$status"
"#;

/// A server under its guard. Dropping it stops the server and removes its directory;
/// [`Guard::stop`] does the same and says whether the server shut down cleanly.
#[derive(Debug)]
pub struct Guard {
    /// The guard process; closing its stdin stops the server.
    child: Child,
    /// The server's directory, which the guard removes once the server has exited.
    base: PathBuf,
    spec: Spec,
}

impl Guard {
    /// Spawns the guard, which runs `server` (a command with its program and arguments)
    /// with its output appended to the log in `base`.
    pub(crate) fn spawn(base: PathBuf, spec: Spec, server: &Command) -> Result<Guard, Error> {
        let child = Command::new("sh")
            .args(["-c", GUARD, spec.guard_name])
            .arg(&base)
            .arg(base.join(spec.log_file))
            .arg(spec.shutdown_signal)
            .arg(server.get_program())
            .args(server.get_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io("starting the server's guard (sh)", e))?;
        Ok(Guard { child, base, spec })
    }

    /// Waits until `accepts_connections` says the server does, every
    /// [`Spec::ready_poll`] for up to [`Spec::ready_timeout`]. A server that exits
    /// first, or takes too long, is an error that carries its log.
    pub fn wait_until_ready(
        &self,
        mut accepts_connections: impl FnMut() -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + self.spec.ready_timeout;
        loop {
            if let Ok(status) = fs::read_to_string(self.base.join("exited")) {
                return Err(Error::Exited {
                    status: format!("exit status {}", status.trim()),
                    log: self.log(),
                });
            }
            if accepts_connections()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    seconds: self.spec.ready_timeout.as_secs(),
                    log: self.log(),
                });
            }
            thread::sleep(self.spec.ready_poll);
        }
    }

    /// Stops the server and removes its directory, reporting whether the server shut
    /// down cleanly. Dropping does the same, silently.
    pub fn stop(mut self) -> Result<(), Error> {
        match self.shut_down() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(Error::Shutdown {
                status: status.to_string(),
            }),
            Err(e) => Err(Error::io("waiting for the server's guard", e)),
        }
    }

    fn shut_down(&mut self) -> io::Result<ExitStatus> {
        // Closing the guard's stdin is the stop signal; it exits once the server has
        // and its directory is gone.
        drop(self.child.stdin.take());
        self.child.wait()
    }

    fn log(&self) -> String {
        let path = self.base.join(self.spec.log_file);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| format!("(could not read {}: {e})", path.display()))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Nothing useful to do with a failure here; `stop` reports it.
        let _ = self.shut_down();
    }
}

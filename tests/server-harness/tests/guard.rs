//! The guard around a stand-in server (a shell script): it waits for the server to be
//! ready, reports one that fails to start with its log, and removes the directory.

use std::path::PathBuf;
use std::time::Duration;

use tessera_test_server::{Error, Guard, ServerDir, Spec};

const SPEC: Spec = Spec {
    dir_prefix: "tessera-test-server-",
    guard_name: "tessera-test-server-guard",
    log_file: "server.log",
    system_user: "nobody",
    install_script: "(nothing to install)",
    shutdown_signal: "TERM",
    ready_timeout: Duration::from_secs(10),
    ready_poll: Duration::from_millis(10),
};

/// Starts `script` under a guard, with the server's directory as `$1`.
fn start(script: &str) -> Result<(Guard, PathBuf), Error> {
    let dir = ServerDir::create(SPEC)?;
    let base = dir.path().to_owned();
    let mut server = dir.command(script);
    server.arg(&base);
    Ok((dir.spawn(&server)?, base))
}

#[test]
fn a_ready_server_stops_on_its_signal_and_leaves_nothing() -> Result<(), Error> {
    // The trap first: a SIGTERM between `touch` and `trap` would end the shell
    // with 143 (it did, once, in CI).
    let (guard, base) =
        start(r#"trap 'exit 0' TERM; touch "$1/ready"; while :; do sleep 0.1; done"#)?;
    guard.wait_until_ready(|| Ok(base.join("ready").exists()))?;
    guard.stop()?;
    assert!(!base.exists(), "{} is left behind", base.display());
    Ok(())
}

#[test]
fn a_server_that_exits_during_startup_is_reported_with_its_log() -> Result<(), Error> {
    let (guard, base) = start("echo 'no space left' >&2; exit 3")?;
    let error = guard
        .wait_until_ready(|| Ok(false))
        .expect_err("the server exited");
    assert!(
        matches!(&error, Error::Exited { status, log }
            if status == "exit status 3" && log.contains("no space left")),
        "{error:?}"
    );
    drop(guard);
    assert!(!base.exists(), "{} is left behind", base.display());
    Ok(())
}

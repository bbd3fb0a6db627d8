//! No server outlives its test process, however that process ends. Each test runs this
//! test binary again as a child that starts the shared server (which, living in a
//! static, is never dropped) and then ends; the server and its directory must go.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tessera_test_postgres::TestPostgres;

/// Tells the child helper how to end: `return`, `panic` or `hang` (to be SIGKILLed).
const CHILD_MODE: &str = "TESSERA_TEST_POSTGRES_CHILD_MODE";
const CHILD_TEST: &str = "child_holding_the_shared_server";

#[test]
#[ignore = "the no-leak tests run it as a child process"]
fn child_holding_the_shared_server() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let postgres = TestPostgres::shared().expect("shared server");
    println!("socket_dir={}", postgres.socket_dir().display());
    std::io::stdout().flush().expect("flush");
    match mode.as_str() {
        "panic" => panic!("the child panics while holding the shared server"),
        "hang" => loop {
            thread::sleep(Duration::from_secs(3600));
        },
        _ => {}
    }
}

#[test]
fn the_server_goes_when_the_test_process_exits() -> anyhow::Result<()> {
    let (mut child, server_dir) = spawn_child("return")?;
    assert!(child.wait()?.success());
    assert_gone(&server_dir)
}

#[test]
fn the_server_goes_when_a_test_panics() -> anyhow::Result<()> {
    let (mut child, server_dir) = spawn_child("panic")?;
    let status: ExitStatus = child.wait()?;
    assert_eq!(
        status.code(),
        Some(101),
        "libtest's exit code for a failed test"
    );
    assert_gone(&server_dir)
}

#[test]
fn the_server_goes_when_the_test_process_is_killed() -> anyhow::Result<()> {
    let (mut child, server_dir) = spawn_child("hang")?;
    child.kill()?; // SIGKILL: no destructor, no handler, nothing runs in the child
    child.wait()?;
    assert_gone(&server_dir)
}

/// Starts the child and returns it with its server's directory, once the server runs.
fn spawn_child(mode: &str) -> anyhow::Result<(Child, PathBuf)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture", "--quiet"])
        .env(CHILD_MODE, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("child's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let socket_dir = loop {
        let line = lines.next().context("the child ended without a server")??;
        if let Some(dir) = line.strip_prefix("socket_dir=") {
            break PathBuf::from(dir);
        }
    };
    // Keep reading, so that the child's later output never meets a closed pipe.
    thread::spawn(move || lines.for_each(drop));
    let server_dir = socket_dir
        .parent()
        .context("socket dir's parent")?
        .to_owned();
    assert!(
        !processes_mentioning(&server_dir).is_empty(),
        "the child's server is running"
    );
    Ok((child, server_dir))
}

/// Waits up to ten seconds for the server's processes and directory to disappear.
fn assert_gone(server_dir: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let processes = processes_mentioning(server_dir);
        if processes.is_empty() && !server_dir.exists() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "left behind: directory exists: {}, processes: {processes:?}",
                server_dir.exists()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Live processes whose command line mentions `path` (the guard and the postmaster do).
/// Zombies have an empty command line and do not count.
fn processes_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|entry| fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(needle.as_ref()))
        .collect()
}

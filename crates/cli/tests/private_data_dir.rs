//! `tributary serve` keeps the data dir private to the service user: the
//! dir itself 0700 (an existing one that was more open is made so, with a
//! log line), and everything it creates inside readable by that user only.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Kills the server when the test ends, however it ends.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every file and directory under `dir` with its permission bits.
fn modes(dir: &Path, out: &mut Vec<(String, bool, u32)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        out.push((
            entry.path().display().to_string(),
            meta.is_dir(),
            meta.permissions().mode() & 0o777,
        ));
        if meta.is_dir() {
            modes(&entry.path(), out)?;
        }
    }
    Ok(())
}

#[test]
fn serve_makes_the_data_dir_private_and_creates_private_files() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    std::fs::create_dir(&data)?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755))?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("serve")
        .arg("--data-dir")
        .arg(&data)
        .args(["--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env_clear()
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let _serve = Serve(child);
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("listening on")) {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| format!("serve did not start; it said: {log:#?}"))?;
        log.push(line);
    }
    assert!(
        log.iter()
            .any(|l| l.contains("data dir was open to other users")),
        "a log line says the data dir was made private: {log:#?}"
    );
    assert_eq!(
        std::fs::metadata(&data)?.permissions().mode() & 0o777,
        0o700
    );
    let mut found = Vec::new();
    modes(&data, &mut found)?;
    assert!(
        found
            .iter()
            .any(|(path, _, _)| path.ends_with("store.sqlite")),
        "serve created its files: {found:#?}"
    );
    let open: Vec<_> = found
        .iter()
        .filter(|(_, _, mode)| mode & 0o077 != 0)
        .collect();
    assert!(open.is_empty(), "open to other users: {open:#?}");
    Ok(())
}

//! The README's walkthrough, run as written: the `sh` block after "The
//! whole loop by hand" goes to bash unchanged, in a fresh folder, with the
//! real `gridwork` and `gridwork-server` binaries on PATH, a real server on
//! 127.0.0.1:8470 and real JPEGs for the photos it names. If the README's
//! commands stop working, this fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use gridwork_tests::{jpeg_bytes, scene, write_file};

fn readme_walkthrough(readme: &str) -> String {
    let start = readme.find("The whole loop by hand").expect("the walkthrough's introduction in README.md");
    let block = &readme[start..];
    let open = block.find("```sh\n").expect("its sh block") + "```sh\n".len();
    let close = block[open..].find("```").expect("the block's end");
    block[open..open + close].to_owned()
}

/// Where cargo put this package's binary; the server's is built beside it
/// by the workspace build (`scripts/test` builds every binary first).
fn binaries() -> PathBuf {
    let gridwork = Path::new(env!("CARGO_BIN_EXE_gridwork"));
    let dir = gridwork.parent().expect("a folder").to_owned();
    assert!(
        dir.join("gridwork-server").exists(),
        "gridwork-server is not built beside gridwork in {}: build the workspace (cargo build --workspace) first",
        dir.display()
    );
    dir
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
    let script = readme_walkthrough(&std::fs::read_to_string(repo.join("README.md")).unwrap());
    assert!(script.contains("gridwork-server") && script.contains("task verify"), "{script}");

    let dir = tempfile::tempdir().unwrap();
    // The photos it names, and the repository files it reads.
    for (i, name) in ["hazard.jpg", "after.jpg", "check.jpg"].iter().enumerate() {
        write_file(dir.path(), name, &jpeg_bytes(&scene(800, 600, 40 + i as u32), 85, None));
    }
    std::os::unix::fs::symlink(repo.join("docs"), dir.path().join("docs")).unwrap();

    let path = format!("{}:{}", binaries().display(), std::env::var("PATH").unwrap_or_default());
    // Strict, and the server it starts in the background is stopped however it ends.
    let wrapped = format!("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}");
    let output = Command::new("bash")
        .arg("-c")
        .arg(&wrapped)
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("GRIDWORK_DEVICE_KEY")
        .env_remove("GRIDWORK_DEVICE")
        .env_remove("GRIDWORK_SERVER_DATA")
        .env_remove("GRIDWORK_DATABASE_URL")
        .env_remove("GRIDWORK_PASSWORD")
        .env("GRIDWORK_LOG", "warn")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the walkthrough failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    // What a newcomer should see at the end: the case closed with its rating.
    assert!(stdout.contains("status    closed"), "the case ends closed:\n{stdout}");
    assert!(stdout.contains("(4/5)"), "with the rating given:\n{stdout}");
    assert!(stdout.contains("closed            1") && stdout.contains("average rating    4.0 of 5"), "and the grid's figures count it:\n{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

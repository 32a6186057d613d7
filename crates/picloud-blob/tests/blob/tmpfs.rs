//! A small tmpfs for the full-disk test, mounted as `picloud_testkit::tmpfs` does (the
//! testkit itself depends on the whole server, which will depend on this crate).
//! Mounting needs root: CI runs as root and sets `PICLOUD_TEST_REQUIRE_TMPFS=1`, and
//! then a failed mount fails the test; elsewhere the test is skipped, saying so.

use std::path::Path;
use std::process::Command;

const REQUIRE_VAR: &str = "PICLOUD_TEST_REQUIRE_TMPFS";

fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.trim().is_empty() && v.trim() != "0")
}

/// A tmpfs on a fresh temporary directory, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size_bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let outcome = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes},mode=0755")])
            .arg("tmpfs")
            .arg(dir.path())
            .output();
        let why = match outcome {
            Ok(out) if out.status.success() => return Some(Self { dir }),
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            !required(),
            "{REQUIRE_VAR} is set but a tmpfs cannot be mounted: {why}"
        );
        eprintln!("skipped: cannot mount a tmpfs ({why}); CI sets {REQUIRE_VAR} and runs as root");
        None
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}

//! A small tmpfs for full-disk tests: the most honest way to make SQLite meet
//! `ENOSPC` is a real filesystem that runs out of space.
//!
//! Mounting needs root. CI runs as root and exports [`REQUIRE_VAR`], so there a
//! failed mount fails the test; elsewhere the test is skipped, saying so.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set (to anything but `0` or empty) where the full-disk tests must run.
pub const REQUIRE_VAR: &str = "PICLOUD_TEST_REQUIRE_TMPFS";

/// A tmpfs mounted on a fresh temporary directory, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| !v.trim().is_empty() && v.trim() != "0")
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_bytes`; `None` (the test skips, saying so) when this
    /// machine cannot and [`REQUIRE_VAR`] is unset. Panics when it is set.
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

    fn ballast(&self) -> PathBuf {
        self.dir.path().join("ballast")
    }

    /// Takes every free byte with a ballast file; returns how many it took.
    pub fn fill(&self) -> u64 {
        self.fill_leaving(0)
    }

    /// Takes all but about `slack` free bytes; returns how many it took.
    pub fn fill_leaving(&self, slack: u64) -> u64 {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.ballast())
            .expect("open ballast");
        let mut taken = 0;
        // Big chunks first, then smaller ones for the last partial pages.
        for chunk in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
            let bytes = vec![0xA5u8; chunk];
            loop {
                match file.write(&bytes) {
                    Ok(0) => break,
                    Ok(n) => taken += n as u64,
                    Err(e) if e.kind() == ErrorKind::StorageFull => break,
                    Err(e) => panic!("writing ballast: {e}"),
                }
            }
        }
        let kept = taken.saturating_sub(slack);
        file.set_len(kept).expect("shrink ballast");
        let _ = file.sync_all();
        kept
    }

    /// Gives the ballast's space back.
    pub fn free(&self) {
        match std::fs::remove_file(self.ballast()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => panic!("removing ballast: {e}"),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server that still holds files open must not keep the mount alive.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}

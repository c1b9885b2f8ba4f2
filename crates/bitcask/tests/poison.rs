//! A failed write poisons the engine: every later call fails, and the data
//! written before the failure is still there after a reopen.
//!
//! The failure is real: a child process (this test binary, re-run with an
//! environment variable) lowers its file size limit (`RLIMIT_FSIZE`, with
//! `SIGXFSZ` ignored) so that a write past it fails with `EFBIG`.

use std::process::Command;

use bitcask::{Bitcask, Engine, Error, Options};

const DIR_VAR: &str = "BITCASK_POISON_CHILD_DIR";
const LIMIT: u64 = 64 * 1024;

#[test]
fn child_writes_past_the_file_size_limit() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    // SAFETY: plain system calls on this process's own settings; no memory
    // of ours is passed except the `rlimit` value, which lives across the
    // call.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: LIMIT,
            rlim_max: LIMIT,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let db = Bitcask::open(&dir, Options::default()).unwrap();
    let value = [7u8; 1000];
    let mut written = 0u32;
    let err = loop {
        match db.put(&written.to_be_bytes(), &value) {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(&err, Error::Io { source, .. } if source.raw_os_error() == Some(libc::EFBIG)),
        "{err}"
    );
    assert!(err.is_fatal());
    // Every later call fails, reads included.
    for result in [
        db.put(b"k", b"v").map(|_| ()),
        db.get(&0u32.to_be_bytes()).map(|_| ()),
        db.sync(),
        db.merge(),
        db.status().map(|_| ()),
    ] {
        assert!(matches!(result, Err(Error::Poisoned(_))), "{result:?}");
    }
    println!("\nwritten {written}");
}

#[test]
fn a_failed_write_poisons_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writes_past_the_file_size_limit",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: u32 = stdout
        .lines()
        .find_map(|l| l.split("written ").nth(1))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(written > 10);
    // Reopened without the limit: everything written before the failure is
    // there, and nothing of the failed write.
    let db = Bitcask::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.status().unwrap().keys, u64::from(written));
    for i in 0..written {
        assert_eq!(db.get(&i.to_be_bytes()).unwrap().unwrap().len(), 1000);
    }
    assert_eq!(db.get(&written.to_be_bytes()).unwrap(), None);
}

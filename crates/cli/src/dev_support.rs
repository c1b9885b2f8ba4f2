//! Checks `raftkv dev` makes around its nodes: ports free before it starts
//! them, and data directories no other process uses before it deletes
//! them.

use std::path::Path;

use crate::exit::CliError;

/// Fails naming the first of `addrs` (`(what, host:port)`) that cannot be
/// bound now: taken by another process (a second `raftkv dev`, a node
/// started by hand...).
///
/// # Errors
/// [`CliError::BadInput`] naming the port and the fix.
pub fn check_ports_free(addrs: &[(String, String)]) -> Result<(), CliError> {
    for (what, addr) in addrs {
        if let Err(e) = std::net::TcpListener::bind(addr.as_str()) {
            return Err(CliError::BadInput(format!(
                "cannot use {addr} for {what}: {e}; is another `raftkv dev` or node \
                 running? Stop it, or pick free ports with --base-port"
            )));
        }
    }
    Ok(())
}

/// Whether some process holds `node_dir`'s WAL open (its `wal/LOCK` is
/// locked): a node started by hand on a dev cluster's data.
pub fn in_use(node_dir: &Path) -> bool {
    let lock = node_dir.join("wal").join("LOCK");
    let Ok(file) = std::fs::File::open(&lock) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_named() {
        let held = match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        let addr = match held.local_addr() {
            Ok(a) => a.to_string(),
            Err(e) => panic!("{e}"),
        };
        let e = match check_ports_free(&[("node 1".into(), addr.clone())]) {
            Ok(()) => panic!("a taken port passed"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(&addr) && e.contains("--base-port"), "{e}");
        drop(held);
        assert!(check_ports_free(&[("node 1".into(), addr)]).is_ok());
    }

    #[test]
    fn a_locked_wal_marks_its_directory_in_use() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert!(!in_use(dir.path()), "no WAL yet");
        let wal = dir.path().join("wal");
        if let Err(e) = std::fs::create_dir(&wal) {
            panic!("{e}");
        }
        let lock = match std::fs::File::create(wal.join("LOCK")) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        assert!(!in_use(dir.path()), "unlocked");
        if let Err(e) = lock.lock() {
            panic!("{e}");
        }
        assert!(in_use(dir.path()), "locked by an open WAL");
    }
}

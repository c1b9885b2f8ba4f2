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

/// A line typed into `raftkv dev`'s terminal.
#[derive(Debug, PartialEq, Eq)]
pub enum DevCommand {
    /// Start node N again (after it was killed or stopped).
    Restart(u64),
    /// Stop node N (SIGTERM), to try failover.
    Stop(u64),
    /// List the commands.
    Help,
}

/// What the commands are, for the banner and `help`.
pub const DEV_COMMANDS_HELP: &str =
    "Type here: `stop N` stops node N, `restart N` starts it again \
(after a stop or a kill -9), `help` lists these.";

/// Parses one line; `Ok(None)` for a blank line.
///
/// # Errors
/// A message naming the commands.
pub fn parse_dev_command(line: &str) -> Result<Option<DevCommand>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let id = |w: &str| {
        w.parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("`{w}` is not a node id"))
    };
    match words.as_slice() {
        [] => Ok(None),
        ["restart" | "start", n] => Ok(Some(DevCommand::Restart(id(n)?))),
        ["stop", n] => Ok(Some(DevCommand::Stop(id(n)?))),
        ["help" | "?"] => Ok(Some(DevCommand::Help)),
        _ => Err(format!(
            "unknown command `{}`. {DEV_COMMANDS_HELP}",
            line.trim()
        )),
    }
}

/// Lines from standard input, on a bounded channel (closed at end of
/// input; a full channel holds the reader back).
pub fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = tokio::sync::mpsc::channel(crate::limits::DEV_STDIN_LINES_MAX);
    // A plain thread: reading a terminal blocks. It ends with the input,
    // or with the process.
    let spawned = std::thread::Builder::new()
        .name("dev-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("typed commands are off: cannot read standard input: {e}");
    }
    rx
}

#[cfg(test)]
mod command_tests {
    use super::*;

    #[test]
    fn dev_commands_parse() {
        assert_eq!(
            parse_dev_command("restart 2"),
            Ok(Some(DevCommand::Restart(2)))
        );
        assert_eq!(
            parse_dev_command("  stop 3 "),
            Ok(Some(DevCommand::Stop(3)))
        );
        assert_eq!(parse_dev_command("help"), Ok(Some(DevCommand::Help)));
        assert_eq!(parse_dev_command(""), Ok(None));
        assert!(parse_dev_command("restart x").is_err());
        assert!(parse_dev_command("restart 0").is_err());
        assert!(parse_dev_command("reboot 1").is_err_and(|e| e.contains("restart N")));
    }
}

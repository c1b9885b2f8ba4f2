//! Environment variables for `raftkv server`: every long flag `--some-flag`
//! can also be given as `RAFTKV_SOME_FLAG` (a container's usual way to be
//! configured). A flag on the command line wins over its variable, and both
//! win over the TOML file of `--config`.
//!
//! The variables are attached to the parsed command at start-up rather than
//! written on each flag, so that a flag added later gets its variable too.
//! Boolean flags take `true` or `false`; list flags (`--peers`) take their
//! usual comma-separated value.

/// The prefix of every server variable.
pub const ENV_PREFIX: &str = "RAFTKV_";

/// The variable of the long flag `long`: `peer-listen` → `RAFTKV_PEER_LISTEN`.
pub fn env_name(long: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        long.to_ascii_uppercase().replace('-', "_")
    )
}

/// `cmd` (the whole `raftkv` command) with a variable on every long flag
/// of its `server` subcommand that has none yet.
pub fn with_server_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommand("server", |mut server| {
        let flags: Vec<(clap::Id, String)> = server
            .get_arguments()
            .filter(|a| a.get_env().is_none())
            .filter_map(|a| {
                let long = a.get_long()?;
                (long != "help" && long != "version").then(|| (a.get_id().clone(), env_name(long)))
            })
            .collect();
        for (id, name) in flags {
            server = server.mut_arg(id, |a| a.env(name));
        }
        server
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_server_flag_has_its_variable() {
        let mut cmd = with_server_env(crate::Cli::command());
        cmd.build();
        let Some(server) = cmd.find_subcommand("server") else {
            panic!("no server subcommand");
        };
        let mut seen = 0;
        for a in server.get_arguments() {
            let Some(long) = a.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            let env = a.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env, Some(env_name(long)), "--{long}");
            seen += 1;
        }
        assert!(seen > 20, "only {seen} flags");
        assert_eq!(env_name("peer-listen"), "RAFTKV_PEER_LISTEN");
        assert_eq!(env_name("data-dir"), "RAFTKV_DATA_DIR");
        // The client commands keep their own variables only.
        let Some(get) = cmd.find_subcommand("get") else {
            panic!("no get subcommand");
        };
        let endpoints = get
            .get_arguments()
            .find(|a| a.get_long() == Some("endpoints"));
        assert_eq!(
            endpoints
                .and_then(|a| a.get_env())
                .map(|e| e.to_string_lossy().into_owned()),
            Some("RAFTKV_ENDPOINTS".to_string())
        );
        assert!(get
            .get_arguments()
            .filter(|a| a.get_long() == Some("serializable"))
            .all(|a| a.get_env().is_none()));
    }
}

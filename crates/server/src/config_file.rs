//! The config file around [`Config`]: the annotated reference of every
//! setting ([`REFERENCE`], printed by `raftkv server --help`), paths in a
//! file relative to the file's directory, and the files a config names,
//! checked before a node writes anything.

use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

/// Every TOML setting with its default and its flag, as comments: the
/// reference `raftkv server --help` prints. A test parses it.
pub const REFERENCE: &str = include_str!("../config-reference.toml");

/// Makes the relative paths the document `raw` sets (`data_dir`, `[tls]`)
/// relative to `base`, the config file's directory. Paths the document does
/// not set (the default `data_dir`) keep their meaning: relative to the
/// working directory.
///
/// # Errors
/// [`ConfigError::Parse`] if `raw` is not TOML (it parsed as a `Config`
/// before, so only on a caller's mistake).
pub fn resolve_relative_paths(
    config: &mut Config,
    raw: &str,
    base: &Path,
) -> Result<(), ConfigError> {
    let table: toml::Table = toml::from_str(raw).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let rebase = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    if table.contains_key("data_dir") {
        rebase(&mut config.data_dir);
    }
    if let Some(tls) = &mut config.tls {
        rebase(&mut tls.ca);
        rebase(&mut tls.cert);
        rebase(&mut tls.key);
    }
    Ok(())
}

/// Checks that every file the config names can be read, so that a typo is
/// reported before the node creates its data dir.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the setting and the path.
pub fn check_named_files(config: &Config) -> Result<(), ConfigError> {
    if let Some(tls) = &config.tls {
        for (field, path) in [
            ("tls.ca", &tls.ca),
            ("tls.cert", &tls.cert),
            ("tls.key", &tls.key),
        ] {
            if let Err(e) = std::fs::File::open(path) {
                return Err(ConfigError::Invalid {
                    field,
                    reason: format!("cannot read {}: {e}", path.display()),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_parses_and_names_every_table() {
        let c = match Config::from_toml_str(REFERENCE) {
            Ok(c) => c,
            Err(e) => panic!("the reference does not parse: {e}"),
        };
        let d = Config::default();
        assert_eq!(
            c.limits, d.limits,
            "reference limits differ from the defaults"
        );
        assert_eq!(
            c.storage, d.storage,
            "reference storage differs from the defaults"
        );
        assert_eq!(
            (c.tick_interval_ms, c.snapshot_threshold_entries),
            (d.tick_interval_ms, d.snapshot_threshold_entries)
        );
        for table in [
            "[peers]",
            "[tls]",
            "[[auth.tokens]]",
            "[storage]",
            "[limits]",
        ] {
            assert!(REFERENCE.contains(table), "{table} missing");
        }
    }

    #[test]
    fn paths_set_in_a_file_are_relative_to_it() {
        let raw =
            "data_dir = \"d\"\n[tls]\nca = \"c/ca.pem\"\ncert = \"/abs/n.pem\"\nkey = \"n.key\"\n";
        let mut c = match Config::from_toml_str(raw) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        if let Err(e) = resolve_relative_paths(&mut c, raw, Path::new("/etc/raftkv")) {
            panic!("{e}");
        }
        assert_eq!(c.data_dir, Path::new("/etc/raftkv/d"));
        let Some(tls) = &c.tls else { panic!("no tls") };
        assert_eq!(tls.ca, Path::new("/etc/raftkv/c/ca.pem"));
        assert_eq!(tls.cert, Path::new("/abs/n.pem"));
        assert_eq!(tls.key, Path::new("/etc/raftkv/n.key"));
        // Not set in the file: the default stays relative to the working dir.
        let mut c = Config::default();
        if let Err(e) = resolve_relative_paths(&mut c, "id = 2", Path::new("/etc/raftkv")) {
            panic!("{e}");
        }
        assert_eq!(c.data_dir, Path::new("data"));
    }

    #[test]
    fn a_missing_named_file_is_reported_by_setting() {
        let raw = "[tls]\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/n.pem\"\nkey = \"/nonexistent/n.key\"\n";
        let c = match Config::from_toml_str(raw) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let e = match check_named_files(&c) {
            Ok(()) => panic!("a missing CA passed"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains("tls.ca") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        assert!(check_named_files(&Config::default()).is_ok());
    }
}

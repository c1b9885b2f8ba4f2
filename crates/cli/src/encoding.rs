//! Keys and values as bytes on the command line and in output.
//!
//! `--encoding text` (the default) takes command-line keys and values as
//! their raw bytes (any bytes the shell passes, not only UTF-8) and prints
//! them as text, with bytes that are not UTF-8 shown as `\xNN`.
//! `--encoding hex` and `--encoding base64` read and print them in that
//! encoding. `--json` output always carries keys and values in base64
//! (standard alphabet, padded), whatever `--encoding` says.
//!
//! A value may also come from a file (`--value-file PATH`) or standard
//! input (`-` as the value): those are taken as raw bytes, never decoded.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::{Args, ValueEnum};

use crate::exit::CliError;
use crate::limits::VALUE_INPUT_SIZE_MAX;

/// How keys and values are written on the command line and printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Encoding {
    /// The argument's bytes as given; printed as text, non-UTF-8 bytes as
    /// `\xNN`.
    #[default]
    Text,
    /// Two hex digits per byte.
    Hex,
    /// Standard base64, padded.
    Base64,
}

/// The `--encoding` option of the key-value commands.
#[derive(Debug, Clone, Args)]
pub struct EncodingOpts {
    /// How keys and values on the command line are written, and how they
    /// are printed: text (raw bytes), hex or base64. `--json` output always
    /// carries them in base64.
    #[arg(long, value_enum, default_value_t = Encoding::Text)]
    pub encoding: Encoding,
}

impl Encoding {
    /// The bytes a command-line argument stands for; `what` names it in an
    /// error ("key", "value").
    ///
    /// # Errors
    /// [`CliError::BadInput`] for malformed hex or base64.
    pub fn decode(self, what: &str, arg: &OsStr) -> Result<Vec<u8>, CliError> {
        let bad = |why: String| {
            CliError::BadInput(format!(
                "the {what} is not {}: {why}",
                match self {
                    Encoding::Hex => "hex",
                    _ => "base64",
                }
            ))
        };
        match self {
            Encoding::Text => Ok(arg.as_bytes().to_vec()),
            Encoding::Hex => {
                let s = arg.as_bytes();
                if !s.len().is_multiple_of(2) {
                    return Err(bad("an odd number of digits".to_string()));
                }
                s.chunks(2)
                    .map(|pair| {
                        let digit = |c: u8| (c as char).to_digit(16);
                        match (digit(pair[0]), digit(pair[1])) {
                            (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                            _ => Err(bad(format!(
                                "`{}` is not a hex byte",
                                String::from_utf8_lossy(pair)
                            ))),
                        }
                    })
                    .collect()
            }
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(arg.as_bytes())
                .map_err(|e| bad(e.to_string())),
        }
    }

    /// `bytes` for printing.
    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Text => text(bytes),
            Encoding::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            Encoding::Base64 => base64(bytes),
        }
    }
}

/// `bytes` in standard, padded base64 (the `--json` encoding).
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Bytes as text: UTF-8 as is, every other byte as `\xNN` (nothing is
/// dropped or replaced, so different keys never print the same).
pub fn text(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        s.push_str(chunk.valid());
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Where a written value comes from: the command line, standard input
/// (`-`), or a file.
#[derive(Debug, Clone, Args)]
pub struct ValueArg {
    /// The value; `-` reads it from standard input (raw bytes).
    #[arg(required_unless_present = "value_file", conflicts_with = "value_file")]
    pub value: Option<OsString>,
    /// Read the value from this file (raw bytes).
    #[arg(long, value_name = "PATH")]
    pub value_file: Option<PathBuf>,
}

impl ValueArg {
    /// The value's bytes.
    ///
    /// # Errors
    /// [`CliError::BadInput`] for an unreadable or too large input, or a
    /// malformed encoding.
    pub fn bytes(&self, encoding: Encoding) -> Result<Vec<u8>, CliError> {
        match (&self.value, &self.value_file) {
            (_, Some(path)) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    CliError::BadInput(format!("cannot read {}: {e}", path.display()))
                })?;
                read_capped(file, path)
            }
            (Some(v), None) if v == "-" => read_capped(std::io::stdin().lock(), Path::new("-")),
            (Some(v), None) => encoding.decode("value", v),
            (None, None) => Err(CliError::BadInput(
                "give a value, `-` for standard input, or --value-file".to_string(),
            )),
        }
    }
}

/// Reads all of `r`, refusing more than [`VALUE_INPUT_SIZE_MAX`] bytes.
fn read_capped(r: impl Read, name: &Path) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    let cap = VALUE_INPUT_SIZE_MAX as u64;
    r.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CliError::BadInput(format!("cannot read {}: {e}", name.display())))?;
    if buf.len() as u64 > cap {
        return Err(CliError::BadInput(format!(
            "{}: the value is over {VALUE_INPUT_SIZE_MAX} bytes",
            if name == Path::new("-") {
                "standard input".to_string()
            } else {
                name.display().to_string()
            }
        )));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(e: Encoding, s: &str) -> Result<Vec<u8>, String> {
        e.decode("key", OsStr::new(s)).map_err(|e| e.to_string())
    }

    #[test]
    fn encodings_round_trip_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        for e in [Encoding::Hex, Encoding::Base64] {
            let s = e.encode(&all);
            assert_eq!(dec(e, &s), Ok(all.clone()), "{e:?}");
        }
        assert_eq!(Encoding::Hex.encode(b"\xff\x00a"), "ff0061");
        assert_eq!(dec(Encoding::Hex, "FFfe"), Ok(vec![0xff, 0xfe]));
        assert_eq!(base64(b"\xff\xfe"), "//4=");
        let raw = OsStr::from_bytes(b"\xff\xfe");
        assert_eq!(
            Encoding::Text.decode("key", raw).map_err(|e| e.to_string()),
            Ok(vec![0xff, 0xfe])
        );
    }

    #[test]
    fn malformed_input_is_refused_by_name() {
        let e = dec(Encoding::Hex, "abc").unwrap_err();
        assert!(e.contains("key is not hex"), "{e}");
        let e = dec(Encoding::Hex, "zz").unwrap_err();
        assert!(e.contains("`zz`"), "{e}");
        let e = dec(Encoding::Base64, "!!!").unwrap_err();
        assert!(e.contains("key is not base64"), "{e}");
    }

    #[test]
    fn text_shows_invalid_bytes_without_losing_them() {
        assert_eq!(text(b"a\xffb"), "a\\xffb");
        assert_eq!(text("é/ü".as_bytes()), "é/ü");
        assert_ne!(text(b"\xfe"), text(b"\xff"));
    }

    #[test]
    fn input_over_the_cap_is_refused() {
        let big = vec![7u8; VALUE_INPUT_SIZE_MAX + 1];
        assert!(read_capped(&big[..], Path::new("f")).is_err());
        let ok = read_capped(&big[..VALUE_INPUT_SIZE_MAX], Path::new("f"));
        assert_eq!(ok.map(|v| v.len()).ok(), Some(VALUE_INPUT_SIZE_MAX));
    }
}

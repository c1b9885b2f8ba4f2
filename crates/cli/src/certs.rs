//! `raftkv certs --out DIR`: a development CA and certificates for a
//! secured cluster (TLS for clients, mutual TLS between nodes).
//!
//! Writes, in `DIR` (created if missing; existing files are never
//! overwritten):
//!
//! | file | what |
//! |---|---|
//! | `ca.pem`, `ca.key` | the cluster CA (self-signed) |
//! | `node<i>.pem`, `node<i>.key` for i in 1..=N | node i's identity, for server and client auth |
//! | `client.pem`, `client.key` | a client identity (optional for clients) |
//!
//! Every certificate names `localhost`, `127.0.0.1`, `::1` and each
//! `--hosts` entry. A node certificate also names its node: a URI SAN
//! `raftkv://node/<i>` (the peer listener accepts a caller only if its
//! certificate names the node id its handshake claims) and a DNS SAN
//! `node-<i>.raftkv` (the name peers expect when they dial node i); it is
//! valid for server and client authentication. The client certificate
//! names no node and is valid for client authentication only: it can
//! neither serve as a node nor act as a peer. Keys are ECDSA P-256, written
//! with mode 0600. These are for development and tests: for production,
//! use your own CA, issuing node certificates with the same two names.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::exit::CliError;

/// Most node certificates one run writes.
pub const CERT_NODES_MAX: u16 = 64;

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The directory to write the files into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How many node certificates (node1..nodeN).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=CERT_NODES_MAX as i64))]
    pub nodes: u16,
    /// More host names or IP addresses the certificates are valid for,
    /// comma separated (localhost, 127.0.0.1 and ::1 always are).
    #[arg(long, value_delimiter = ',', value_name = "HOST,...")]
    pub hosts: Vec<String>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Failed(format!("{what}: {e}"))
}

/// Writes `contents` to a new file (refusing to overwrite), with `mode`.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| failed(&format!("cannot create {}", path.display()), e))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| failed(&format!("cannot write {}", path.display()), e))
}

/// A leaf: a node certificate when `node` is given (its URI and DNS names,
/// server and client auth), else a client certificate (client auth only).
fn leaf_params(
    cn: &str,
    sans: &[String],
    node: Option<u64>,
) -> Result<CertificateParams, CliError> {
    let mut names = sans.to_vec();
    if let Some(id) = node {
        names.push(server::security::node_dns_name(id));
    }
    let mut p = CertificateParams::new(names).map_err(|e| failed("certificate names", e))?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::NoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    match node {
        Some(id) => {
            let uri = format!("{}{id}", server::security::NODE_URI_PREFIX)
                .try_into()
                .map_err(|e| failed("node URI", e))?;
            p.subject_alt_names.push(rcgen::SanType::URI(uri));
            p.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
        }
        None => p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth],
    }
    Ok(p)
}

/// Creates the CA and the certificates; returns the files written.
///
/// # Errors
/// A file exists already or cannot be written; a host name is invalid.
pub fn generate(a: &CertsArgs) -> Result<Vec<PathBuf>, CliError> {
    std::fs::create_dir_all(&a.out)
        .map_err(|e| failed(&format!("cannot create {}", a.out.display()), e))?;
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    for h in &a.hosts {
        let h = h.trim();
        if !h.is_empty() && !sans.iter().any(|s| s == h) {
            sans.push(h.to_string());
        }
    }
    // Check first that nothing would be overwritten.
    let mut names = vec!["ca".to_string(), "client".to_string()];
    names.extend((1..=a.nodes).map(|i| format!("node{i}")));
    for n in &names {
        for ext in ["pem", "key"] {
            let p = a.out.join(format!("{n}.{ext}"));
            if p.exists() {
                return Err(CliError::BadInput(format!(
                    "{} exists already; use an empty directory",
                    p.display()
                )));
            }
        }
    }

    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "raftkv development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(|e| failed("CA key", e))?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| failed("CA certificate", e))?;
    let mut written = Vec::new();
    let ca_pem = a.out.join("ca.pem");
    let ca_key_path = a.out.join("ca.key");
    write_new(&ca_pem, &ca_cert.pem(), 0o644)?;
    write_new(&ca_key_path, &ca_key.serialize_pem(), 0o600)?;
    written.push(ca_pem);
    written.push(ca_key_path);
    let issuer = Issuer::new(ca_params, ca_key);

    for n in names.iter().skip(1) {
        let node = n.strip_prefix("node").and_then(|i| i.parse::<u64>().ok());
        let params = leaf_params(&format!("raftkv {n}"), &sans, node)?;
        let key = KeyPair::generate().map_err(|e| failed("key", e))?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| failed("certificate", e))?;
        let pem = a.out.join(format!("{n}.pem"));
        let key_path = a.out.join(format!("{n}.key"));
        write_new(&pem, &cert.pem(), 0o644)?;
        write_new(&key_path, &key.serialize_pem(), 0o600)?;
        written.push(pem);
        written.push(key_path);
    }
    Ok(written)
}

pub fn run(a: CertsArgs) -> Result<(), CliError> {
    let written = generate(&a)?;
    println!(
        "Wrote a development CA and {} node certificate(s) to {}:",
        a.nodes,
        a.out.display()
    );
    for p in &written {
        println!("  {}", p.display());
    }
    println!();
    println!("In node i's config file:");
    println!("  [tls]");
    println!("  ca = \"{}\"", a.out.join("ca.pem").display());
    println!("  cert = \"{}\"", a.out.join("node1.pem").display());
    println!("  key = \"{}\"", a.out.join("node1.key").display());
    println!(
        "Clients: raftkv --cacert {} get KEY",
        a.out.join("ca.pem").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base64_decode(s: &str) -> Vec<u8> {
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(val).collect();
        let mut out = Vec::new();
        for chunk in bytes.chunks(4) {
            let mut n = 0u32;
            for (i, &b) in chunk.iter().enumerate() {
                n |= u32::from(b) << (18 - 6 * i);
            }
            for i in 0..chunk.len().saturating_sub(1) {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        out
    }

    #[test]
    fn writes_a_ca_and_certificates_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let a = CertsArgs {
            out: dir.path().join("certs"),
            nodes: 2,
            hosts: vec!["node.example".into()],
        };
        let written = generate(&a).unwrap();
        assert_eq!(written.len(), 2 * 4);
        let pem = std::fs::read_to_string(a.out.join("node2.pem")).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let key = std::fs::read_to_string(a.out.join("node2.key")).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        let der = |name: &str| {
            let pem = std::fs::read_to_string(a.out.join(name)).unwrap();
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            base64_decode(&b64)
        };
        assert_eq!(server::security::node_ids_of(&der("node2.pem")), vec![2]);
        assert_eq!(server::security::node_ids_of(&der("node1.pem")), vec![1]);
        assert!(server::security::node_ids_of(&der("client.pem")).is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.out.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(generate(&a), Err(CliError::BadInput(_))));
    }
}

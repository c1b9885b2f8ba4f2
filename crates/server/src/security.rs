//! Client authentication (bearer tokens) and TLS settings of a node.
//!
//! # Tokens
//!
//! ```toml
//! [[auth.tokens]]
//! token = "s3cret-writer"
//! role = "write"        # may read and write
//! [[auth.tokens]]
//! token = "s3cret-reader"
//! role = "read"         # may only read
//! ```
//!
//! With no token configured, authentication is off. With at least one, every
//! call to the `Kv` and `Cluster` services must carry the header
//! `authorization: Bearer <token>`:
//!
//! | request | answer |
//! |---|---|
//! | no header, a malformed one, or an unknown token | `UNAUTHENTICATED` |
//! | a `read` token calling a method that changes state | `PERMISSION_DENIED` |
//!
//! Methods that only read: `Kv.Get`, `Kv.Scan`, `Cluster.Status`,
//! `Cluster.Members`. Every other `Kv` and `Cluster` method (writes,
//! sessions, membership, leadership transfer, snapshots) needs `write`.
//! Tokens are compared in constant time. The peer service (`raft.Raft`) and
//! `health.Health` take no token: peers authenticate with their TLS client
//! certificate (see below), so tokens without TLS leave the peer port open
//! to anyone who can reach it.
//!
//! # TLS
//!
//! ```toml
//! [tls]
//! ca = "certs/ca.pem"        # the cluster CA: verifies peers' client certificates
//! cert = "certs/node1.pem"   # this node's certificate (server and client auth)
//! key = "certs/node1.key"
//! ```
//!
//! With `tls` set the node serves TLS only on both listeners (a plaintext
//! connection fails the handshake). The client listener asks for a client
//! certificate signed by `ca` (clients may go without one; a certificate
//! from another CA is refused in the handshake). The peer listener requires
//! one, and the peer handshake accepts it only if it names the calling node
//! in a URI SAN `raftkv://node/<id>`. Peers are dialled with TLS,
//! presenting `cert`, trusting only `ca`, and expecting the answering
//! certificate to name the node dialled (DNS SAN `node-<id>.raftkv`; see
//! the transport's `handshake` module). `raftkv certs` writes a development
//! CA, node certificates (both names, server and client use) and a client
//! certificate (no node name, client use only: it can neither serve nor
//! act as a peer).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;

/// The role of a token.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TokenRole {
    /// Reads only.
    Read,
    /// Reads and writes.
    Write,
}

/// One configured token.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The secret a client sends as `authorization: Bearer <token>`.
    pub token: String,
    /// What the token may do.
    pub role: TokenRole,
}

/// `[auth]`: the tokens. Empty means authentication is off.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The accepted tokens.
    pub tokens: Vec<TokenConfig>,
}

/// `[tls]`: PEM files of the cluster CA and of this node's identity.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The CA that signs every node's (and client's) certificate.
    pub ca: PathBuf,
    /// This node's certificate chain.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

/// The longest token accepted in a header (longer ones are refused unread).
pub const TOKEN_SIZE_MAX: usize = 4096;

impl AuthConfig {
    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks the configured tokens.
    ///
    /// # Errors
    /// An empty, over-long or duplicate token, or one with characters that
    /// cannot go into an HTTP header.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            field: "auth.tokens",
            reason,
        };
        for (i, t) in self.tokens.iter().enumerate() {
            if t.token.is_empty() || t.token.len() > TOKEN_SIZE_MAX {
                return Err(invalid(format!(
                    "token #{} must be 1..={TOKEN_SIZE_MAX} bytes",
                    i + 1
                )));
            }
            if !t.token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(format!(
                    "token #{} must be printable ASCII without spaces",
                    i + 1
                )));
            }
            if self.tokens[..i].iter().any(|o| o.token == t.token) {
                return Err(invalid(format!("token #{} is listed twice", i + 1)));
            }
        }
        Ok(())
    }

    /// The role of `token`, if it is one of ours (constant-time compare).
    pub fn role_of(&self, token: &str) -> Option<TokenRole> {
        let mut found = None;
        for t in &self.tokens {
            if constant_time_eq(t.token.as_bytes(), token.as_bytes()) {
                found = Some(t.role);
            }
        }
        found
    }

    /// A token the node uses itself to ask its peers' `Cluster.Status` (for
    /// the web page): the first configured one.
    pub fn own_token(&self) -> Option<&str> {
        self.tokens.first().map(|t| t.token.as_str())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a gRPC path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token needed (peer and health services, unknown paths).
    Open,
    /// A `read` or `write` token.
    Read,
    /// A `write` token.
    Write,
}

/// The access a gRPC method path (`/package.Service/Method`) needs.
pub fn access_of(path: &str) -> Access {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Access::Open;
    };
    match service {
        "raftkv.kv.Kv" => match method {
            "Get" | "Scan" => Access::Read,
            _ => Access::Write,
        },
        "raftkv.kv.Cluster" => match method {
            "Status" | "Members" => Access::Read,
            _ => Access::Write,
        },
        _ => Access::Open,
    }
}

/// Decides a call: `Ok` or the status to answer with.
///
/// # Errors
/// `UNAUTHENTICATED` or `PERMISSION_DENIED` as in the module docs.
pub fn authorize(
    auth: &AuthConfig,
    path: &str,
    authorization: Option<&[u8]>,
) -> Result<(), tonic::Status> {
    if !auth.enabled() {
        return Ok(());
    }
    let need = access_of(path);
    if need == Access::Open {
        return Ok(());
    }
    let Some(raw) = authorization else {
        return Err(tonic::Status::unauthenticated(
            "this cluster requires a token: send `authorization: Bearer <token>` (raftkv --token)",
        ));
    };
    let token = (raw.len() <= TOKEN_SIZE_MAX + 7)
        .then(|| std::str::from_utf8(raw).ok())
        .flatten()
        .and_then(|s| s.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(role) = token.and_then(|t| auth.role_of(t)) else {
        return Err(tonic::Status::unauthenticated(
            "unknown or malformed token (expected `authorization: Bearer <token>`)",
        ));
    };
    if need == Access::Write && role == TokenRole::Read {
        return Err(tonic::Status::permission_denied(
            "this token may only read (role = \"read\")",
        ));
    }
    Ok(())
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, crate::ServerError> {
    std::fs::read(path).map_err(|e| crate::ServerError::io(path, e))
}

/// The server side of `[tls]`: this node's identity, client certificates
/// verified against the CA (optional for clients, required for peers by
/// the gRPC layer).
///
/// # Errors
/// A file cannot be read.
pub fn server_tls(t: &TlsConfig) -> Result<tonic::transport::ServerTlsConfig, crate::ServerError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(read_pem(&t.cert)?, read_pem(&t.key)?))
        .client_ca_root(Certificate::from_pem(read_pem(&t.ca)?))
        .client_auth_optional(true))
}

/// The peer listener's side of `[tls]`: as [`server_tls`], but a client
/// certificate signed by the CA is required (the peer handshake then checks
/// that it names the calling node).
///
/// # Errors
/// A file cannot be read.
pub fn peer_server_tls(
    t: &TlsConfig,
) -> Result<tonic::transport::ServerTlsConfig, crate::ServerError> {
    Ok(server_tls(t)?.client_auth_optional(false))
}

/// The client side of `[tls]`, for dialing peers: trust only the CA and
/// present this node's certificate.
///
/// # Errors
/// A file cannot be read.
pub fn client_tls(t: &TlsConfig) -> Result<tonic::transport::ClientTlsConfig, crate::ServerError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read_pem(&t.ca)?))
        .identity(Identity::from_pem(read_pem(&t.cert)?, read_pem(&t.key)?)))
}

/// The URI SAN prefix naming a node in its certificate.
pub const NODE_URI_PREFIX: &str = "raftkv://node/";

/// The DNS name a node's certificate carries for outgoing peer TLS.
pub fn node_dns_name(id: u64) -> String {
    format!("node-{id}.raftkv")
}

/// The node ids a DER certificate names in `raftkv://node/<id>` URI SANs
/// (empty if it does not parse or names none).
pub fn node_ids_of(der: &[u8]) -> Vec<u64> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer;
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => u.strip_prefix(NODE_URI_PREFIX)?.parse::<u64>().ok(),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AuthConfig {
        AuthConfig {
            tokens: vec![
                TokenConfig {
                    token: "w".into(),
                    role: TokenRole::Write,
                },
                TokenConfig {
                    token: "r".into(),
                    role: TokenRole::Read,
                },
            ],
        }
    }

    #[test]
    fn tokens_are_enforced_per_method() {
        let a = auth();
        let code = |path: &str, h: Option<&str>| {
            authorize(&a, path, h.map(str::as_bytes))
                .err()
                .map(|s| s.code())
        };
        use tonic::Code;
        assert_eq!(code("/raftkv.kv.Kv/Put", None), Some(Code::Unauthenticated));
        assert_eq!(
            code("/raftkv.kv.Kv/Put", Some("Bearer x")),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            code("/raftkv.kv.Kv/Put", Some("w")),
            Some(Code::Unauthenticated)
        );
        assert_eq!(
            code("/raftkv.kv.Kv/Put", Some("Bearer r")),
            Some(Code::PermissionDenied)
        );
        assert_eq!(
            code("/raftkv.kv.Cluster/TransferLeader", Some("Bearer r")),
            Some(Code::PermissionDenied)
        );
        assert_eq!(code("/raftkv.kv.Kv/Put", Some("Bearer w")), None);
        assert_eq!(code("/raftkv.kv.Kv/Get", Some("Bearer r")), None);
        assert_eq!(code("/raftkv.kv.Cluster/Status", Some("Bearer r")), None);
        assert_eq!(code("/raftkv.raft.Raft/Send", None), None);
        assert_eq!(
            authorize(&AuthConfig::default(), "/raftkv.kv.Kv/Put", None)
                .err()
                .map(|s| s.code()),
            None
        );
    }

    #[test]
    fn bad_tokens_are_refused_in_config() {
        let mut a = auth();
        a.tokens.push(TokenConfig {
            token: "w".into(),
            role: TokenRole::Read,
        });
        assert!(a.validate().is_err());
        let a = AuthConfig {
            tokens: vec![TokenConfig {
                token: "has space".into(),
                role: TokenRole::Read,
            }],
        };
        assert!(a.validate().is_err());
        assert!(auth().validate().is_ok());
    }
}

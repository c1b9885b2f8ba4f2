//! Failures that retrying cannot fix because the client's settings do not
//! match the node: turned into [`Error::Misconfigured`](crate::Error) with
//! the fix, at once, instead of retrying until the deadline with the
//! transport's words (`h2 protocol error`, `BadSignature`...).

/// What `status` (a failed attempt at a node) says about the client's
/// settings, if it is one of the known mismatches; `tls` tells whether the
/// client speaks TLS.
pub(crate) fn misconfiguration(status: &tonic::Status, tls: bool) -> Option<String> {
    let m = status.message().to_ascii_lowercase();
    let hint = if m.contains("grpc-status header missing") && m.contains("http status code") {
        "the address answers HTTP but not gRPC: it is probably a node's http_addr \
         (metrics and web page); give the node's client address (listen_addr)"
    } else if tls && (m.contains("invalidcontenttype") || m.contains("corrupt message")) {
        "the address does not speak TLS: for a plaintext cluster drop --cacert \
         (and RAFTKV_CACERT); otherwise check that it is a node's client address"
    } else if tls && m.contains("notvalidforname") {
        "the node's certificate does not name the host you connect to: connect \
         by a name or address in its certificate (`raftkv certs --hosts`)"
    } else if tls
        && (m.contains("invalid peer certificate")
            || m.contains("unknownissuer")
            || m.contains("badsignature"))
    {
        "the node's certificate is not signed by the CA given with --cacert: \
         pass the cluster's CA certificate"
    } else if !tls && status.code() == tonic::Code::Internal && m.contains("h2 protocol error") {
        "the node did not answer plaintext gRPC; it probably speaks TLS: pass \
         --cacert FILE (the cluster's CA certificate, or set RAFTKV_CACERT)"
    } else {
        return None;
    };
    Some(format!("{hint} ({})", status.message()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    fn hint(code: Code, message: &str, tls: bool) -> String {
        misconfiguration(&Status::new(code, message), tls).unwrap_or_default()
    }

    #[test]
    fn known_mismatches_name_their_fix() {
        assert!(hint(Code::Internal, "h2 protocol error: http2 error", false).contains("--cacert"));
        assert!(hint(
            Code::Unavailable,
            "invalid peer certificate: BadSignature",
            true
        )
        .contains("not signed by the CA"));
        assert!(hint(
            Code::Unimplemented,
            "grpc-status header missing, mapped from HTTP status code 404",
            false
        )
        .contains("http_addr"));
        assert!(hint(
            Code::Unavailable,
            "received corrupt message of type InvalidContentType",
            true
        )
        .contains("does not speak TLS"));
    }

    #[test]
    fn ordinary_failures_are_left_alone() {
        for (code, m, tls) in [
            (
                Code::Unavailable,
                "tcp connect error: Connection refused",
                false,
            ),
            (Code::Unavailable, "not the leader", true),
            (Code::Internal, "h2 protocol error: http2 error", true),
            (Code::InvalidArgument, "empty key", false),
        ] {
            assert_eq!(misconfiguration(&Status::new(code, m), tls), None, "{m}");
        }
    }
}

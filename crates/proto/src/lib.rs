//! raftkv's protobuf messages and gRPC services, generated at build time from
//! `proto/*.proto`, plus conversions between them and our own types.

/// `proto/health.proto`.
pub mod health {
    tonic::include_proto!("raftkv.health");
}

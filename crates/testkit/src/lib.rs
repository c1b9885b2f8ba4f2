//! Support shared by the integration tests of several raftkv crates.
//!
//! # Ports
//!
//! Tests that stop a node and start it again on the same address need a
//! port nobody else takes in between. A port from the kernel's ephemeral
//! range (what binding `127.0.0.1:0` returns) is not such a port: while the
//! node is down, any outgoing connection on the machine (another node's
//! reconnect, a client) may get it as its source port, and the restart then
//! fails with "address in use" for as long as that connection lives. So the
//! ports handed out here lie below the ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`), where the kernel never picks
//! source ports, and each is checked to be bindable when handed out.
//!
//! Within one process the ports are distinct (a shared counter); separate
//! processes start at different places (pid and clock), and a port in use is
//! skipped.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The lowest port handed out.
const LOW: u32 = 10_000;

/// Where the kernel's ephemeral range starts (32768 on Linux by default),
/// read once per process.
fn ephemeral_low() -> u32 {
    static LOW_END: OnceLock<u32> = OnceLock::new();
    *LOW_END.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(32_768)
    })
}

/// This process's starting offset into the range.
fn origin() -> u32 {
    static ORIGIN: OnceLock<u32> = OnceLock::new();
    *ORIGIN.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        std::process::id().wrapping_mul(2_654_435_761) ^ nanos
    })
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn bindable(port: u32) -> bool {
    u16::try_from(port).is_ok_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// A free loopback port outside the ephemeral range.
pub fn free_port() -> u16 {
    free_port_run(1, 0)
}

/// `n` distinct free loopback ports outside the ephemeral range.
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

/// A free loopback address (`127.0.0.1:port`) outside the ephemeral range.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A port `p` with `p..p+n` free and, if `offset > 0`, `p+offset..p+offset+n`
/// free too (for programs that derive a second port from the first), all
/// outside the ephemeral range. Panics if no such run is found.
pub fn free_port_run(n: u16, offset: u16) -> u16 {
    let (n, offset) = (u32::from(n), u32::from(offset));
    let need = offset + n;
    let high = ephemeral_low().min(65_536);
    let span = high.saturating_sub(LOW).saturating_sub(need);
    assert!(
        span >= 1_000,
        "the ephemeral port range starts at {high}: too low to leave test ports below it"
    );
    for _ in 0..2_000 {
        let k = NEXT.fetch_add(need.max(1), Ordering::Relaxed);
        let base = LOW + origin().wrapping_add(k) % span;
        let run_free = |from: u32| (from..from + n).all(bindable);
        if run_free(base) && (offset == 0 || run_free(base + offset)) {
            // `base + need < high <= 65536`, so it fits.
            return base as u16;
        }
    }
    panic!("no run of {n} free loopback ports below {high}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_ephemeral_range() {
        let ports = free_ports(50);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 50, "{ports:?}");
        for p in ports {
            assert!(u32::from(p) >= LOW && u32::from(p) < ephemeral_low(), "{p}");
            assert!(bindable(u32::from(p)), "{p}");
        }
    }
}

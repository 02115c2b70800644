//! Helpers shared by the test binaries (each uses a part, hence `dead_code`).
#![allow(dead_code)]

#[cfg(feature = "redis")]
pub mod redis;
#[allow(unused_imports)]
pub use cloakroom_testkit::servers::redis_cluster;

/// A loopback port that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A name no other test run uses: `<what>-<pid>-<random>`.
pub fn unique(what: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{what}-{}-{hex}", std::process::id())
}

//! `rediss://`: the Redis engine over TLS (feature `redis-tls`), against a `redis-server` with a
//! TLS port that this test starts on loopback with a throwaway CA made by `openssl`.
#![cfg(feature = "redis-tls")]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloakroom::engines::redis::RedisStore;
use cloakroom::{Created, Record, SessionStore};
use time::OffsetDateTime;

/// A TLS-only `redis-server`, killed by PID when dropped.
struct TlsServer {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_tls_server(port: u16) -> TlsServer {
    let dir = std::env::temp_dir().join(support::unique("cloakroom-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=cloakroom test CA",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
    let child = Command::new("redis-server")
        .current_dir(&dir)
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .args([
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    let server = TlsServer { child, dir };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the TLS redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[tokio::test]
async fn rediss_urls_connect_over_tls() {
    let port = support::closed_port();
    let server = start_tls_server(port);
    // The client trusts the system's roots, which `SSL_CERT_FILE` replaces; this binary has
    // one test, so nothing else reads the environment meanwhile.
    std::env::set_var("SSL_CERT_FILE", server.dir.join("ca.crt"));

    let store = RedisStore::connect(&format!("rediss://127.0.0.1:{port}"))
        .await
        .unwrap();
    let key = cloakroom::key::generate().unwrap();
    let record = Record {
        data: r#"{"tls":true}"#.into(),
        expires_at: OffsetDateTime::now_utc() + Duration::from_secs(60),
    };
    assert_eq!(store.create(&key, &record).await.unwrap(), Created::Stored);
    let loaded = store.load(&key, OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!(loaded.unwrap().data, record.data);
    drop(server);
}

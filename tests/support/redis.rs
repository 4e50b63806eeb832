//! A real `redis-server` for the tests: on 127.0.0.1, a free port,
//! persistence off, stopped by PID (on drop too). Can be stopped and started
//! again on the same port to test what happens while Redis is down.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, Skip};

const SKIP: Skip = Skip::new("the Redis tests", "");

/// A running (or stopped, see [`RedisServer::stop`]) `redis-server`.
pub struct RedisServer {
    prog: String,
    pub port: u16,
    password: Option<String>,
    dir: PathBuf,
    child: Option<Child>,
    /// TLS only (see [`TlsRedisServer`]): no plain port, so "ready" is the
    /// TLS port accepting connections.
    tls: bool,
}

impl RedisServer {
    /// Starts one, or prints `SKIPPED: ...` and returns `None` when
    /// `redis-server` (or `$REDIS_SERVER`) cannot be run (a failure under
    /// `LLMPOOL_REQUIRE_ALL=1`).
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with_password(None)
    }

    /// Like [`RedisServer::start`], with `requirepass`.
    pub fn start_with_password(password: Option<&str>) -> Option<RedisServer> {
        let prog = SKIP.tool(
            "REDIS_SERVER",
            "redis-server",
            "redis-server (Debian package `redis-server`)",
        )?;
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("llmpool-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create redis dir");
        let mut server = RedisServer {
            prog,
            port,
            password: password.map(str::to_string),
            dir,
            child: None,
            tls: false,
        };
        server.restart();
        Some(server)
    }

    /// `redis://[:password@]127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Kills the server (by PID) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port, empty, and waits until it
    /// answers `PING`.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut cmd = Command::new(&self.prog);
            if self.tls {
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(self.dir.join("leaf.pem"))
                    .arg("--tls-key-file")
                    .arg(self.dir.join("leaf.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(self.dir.join("ca.pem"))
                    .args(["--tls-auth-clients", "no"]);
            } else {
                cmd.args(["--port", &self.port.to_string()]);
            }
            cmd.args(["--bind", "127.0.0.1"])
                .args(["--save", ""])
                .args(["--appendonly", "no"])
                .args(["--daemonize", "no"])
                .arg("--dir")
                .arg(&self.dir);
            if let Some(pw) = &self.password {
                cmd.args(["--requirepass", pw]);
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.prog));
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: the port may still be in TIME_WAIT use; retry
                }
                if self.pings() {
                    self.child = Some(child);
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING in 20 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the server answers `PING` (after `AUTH` when it has a password).
    pub fn pings(&self) -> bool {
        if self.tls {
            return TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        }
        let reply = self.command(&["PING"]);
        reply.as_deref().is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Sends one command (RESP) and returns the first reply's raw bytes as
    /// text, or `None` when the server is not there.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut out = Vec::new();
        let mut push = |args: &[&str]| {
            out.extend(format!("*{}\r\n", args.len()).bytes());
            for a in args {
                out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
            }
        };
        let mut expected = 1;
        if let Some(pw) = &self.password {
            push(&["AUTH", pw]);
            expected = 2;
        }
        push(args);
        s.write_all(&out).ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Good enough for the short replies the tests read: the last reply
        // starts after the `expected - 1`th CRLF.
        loop {
            let n = s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            let lines: Vec<&str> = text.split("\r\n").collect();
            if lines.len() > expected {
                let last = lines[expected - 1..].join("\r\n");
                if !last.starts_with('$') || last.starts_with("$-1") || lines.len() > expected + 1 {
                    return Some(last);
                }
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` speaking only TLS (`rediss://`) with a leaf certificate
/// for 127.0.0.1 signed by a CA made here with the `openssl` CLI; `None`
/// (after a SKIPPED line) when redis-server or openssl is missing.
pub struct TlsRedisServer {
    pub server: RedisServer,
    pub ca_file: PathBuf,
}

impl TlsRedisServer {
    pub fn start() -> Option<TlsRedisServer> {
        let prog = SKIP.tool(
            "REDIS_SERVER",
            "redis-server",
            "redis-server (Debian package `redis-server`)",
        )?;
        let openssl_runs = Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !openssl_runs {
            SKIP.skip("no openssl CLI (Debian package `openssl`) to make the rediss:// test CA");
            return None;
        }
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("llmpool-rediss-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create rediss dir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=llmpool test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext.cnf");
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let mut server = RedisServer {
            prog,
            port,
            password: None,
            dir: dir.clone(),
            child: None,
            tls: true,
        };
        server.restart();
        Some(TlsRedisServer {
            server,
            ca_file: dir.join("ca.pem"),
        })
    }

    /// `rediss://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.server.port)
    }
}

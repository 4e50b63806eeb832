//! A real nginx for tests that need a production HTTP server (gzip
//! encoding, static files): started on 127.0.0.1 in the foreground as a
//! single process with its own config, stopped by PID on drop.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Skip;

pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Nginx {
    /// A fresh directory for the files nginx will serve (`<dir>/www`) before
    /// it starts.
    pub fn new_dir() -> PathBuf {
        let dir = super::fresh_dir("nginx");
        std::fs::create_dir_all(dir.join("www")).expect("create nginx dir");
        dir
    }

    /// Starts nginx (`$NGINX`, default `nginx`) in `dir` with `server` as
    /// the body of its one `server { }` block (after `listen` and `root
    /// <dir>/www`). The access log (`<dir>/access.log`) has lines
    /// `$request_uri $status $bytes_sent "$http_accept_encoding"`. `None`
    /// (after a printed skip) when nginx is not installed.
    pub fn start(skip: &Skip, dir: &Path, server: &str) -> Option<Nginx> {
        let prog = skip.tool_probed("NGINX", "nginx", "nginx (apt-get install nginx)", "-v")?;
        let port = super::free_port();
        let d = dir.display();
        let user = if is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  log_format wire '$request_uri $status $bytes_sent \"$http_accept_encoding\"';\n\
             access_log {d}/access.log wire;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             types {{ application/json json; }}\n  keepalive_requests 100000;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n{server}\n  }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new(&prog)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.txt")).expect("create stderr.txt"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {prog}: {e}"));
        let mut nginx = Nginx {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let err = std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default();
                let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                panic!("nginx exited at start ({status}): {err}{log}");
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on 127.0.0.1:{port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(nginx)
    }

    /// `http://127.0.0.1:<port>/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Access-log lines: (request URI, status, bytes sent, Accept-Encoding).
    pub fn access_log(&self) -> Vec<(String, u16, u64, String)> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut p = l.splitn(4, ' ');
                Some((
                    p.next()?.to_string(),
                    p.next()?.parse().ok()?,
                    p.next()?.parse().ok()?,
                    p.next()?.trim_matches('"').to_string(),
                ))
            })
            .collect()
    }
}

/// nginx refuses `user` lines unless it runs as root, and as root it
/// otherwise switches to `nobody`, who cannot read the test directory.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Child::kill signals exactly this PID (a single process: no
        // master, no workers); wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

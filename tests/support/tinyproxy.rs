//! A real forward proxy for the proxy tests: Debian's `tinyproxy`, started
//! on 127.0.0.1 with its own config and log, stopped by PID on drop.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Skip;

pub struct Tinyproxy {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Tinyproxy {
    /// Starts tinyproxy (`$TINYPROXY`, default `tinyproxy`), requiring
    /// `user:pass` Basic authentication when `auth` is given. `None` (after
    /// a printed skip) when tinyproxy is not installed.
    pub fn start(skip: &Skip, auth: Option<(&str, &str)>) -> Option<Tinyproxy> {
        let prog = skip.tool_probed(
            "TINYPROXY",
            "tinyproxy",
            "tinyproxy (apt-get install tinyproxy)",
            "-v",
        )?;
        let dir = super::fresh_dir("tinyproxy");
        let port = super::free_port();
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 600\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 200\nAllow 127.0.0.1\n",
            dir.join("tinyproxy.log").display()
        );
        if let Some((user, pass)) = auth {
            conf.push_str(&format!("BasicAuth {user} {pass}\n"));
        }
        let conf_path = dir.join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).expect("write tinyproxy.conf");
        let child = Command::new(&prog)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.txt")).expect("create stderr.txt"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {prog}: {e}"));
        // Guard first: the child is stopped even if it never listens.
        let mut proxy = Tinyproxy { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                let err = std::fs::read_to_string(proxy.dir.join("stderr.txt"));
                panic!(
                    "tinyproxy exited at start ({status}): {}",
                    err.unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tinyproxy did not listen on 127.0.0.1:{port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(proxy)
    }

    /// `http://127.0.0.1:<port>`, with `user:pass@` when given.
    pub fn url(&self, auth: Option<(&str, &str)>) -> String {
        match auth {
            Some((u, p)) => format!("http://{u}:{p}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// `127.0.0.1:<port>`, as `info.proxy` and errors name it.
    pub fn label(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// tinyproxy's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tinyproxy.log")).unwrap_or_default()
    }

    /// Request lines tinyproxy logged that start with `prefix`, e.g.
    /// `"CONNECT "` (one per tunnel) or `"POST http://"`.
    pub fn requests(&self, prefix: &str) -> usize {
        self.log()
            .lines()
            .filter_map(|l| l.split_once("Request (file descriptor ").map(|(_, r)| r))
            .filter_map(|r| r.split_once("): ").map(|(_, req)| req))
            .filter(|req| req.starts_with(prefix))
            .count()
    }

    /// Client connections tinyproxy accepted, less the one `start` made
    /// to see it listening.
    pub fn connections(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("Connect (file descriptor "))
            .count()
            .saturating_sub(1)
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        // Child::kill signals exactly this PID; wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

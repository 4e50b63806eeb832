//! `llmpool-testserver [--tls] [--port N] [--ca-out FILE] [--require-key KEY] [--keepalive-max N]`
//!
//! Starts the loopback test server, prints `LISTENING <base_url>` and serves
//! until killed.

use std::io::Write;
use std::process::ExitCode;

use llmpool_testserver::{Options, TestServer};

const USAGE: &str = "usage: llmpool-testserver [--tls] [--port N] [--ca-out FILE] [--require-key KEY] [--keepalive-max N]";

fn parse() -> Result<(Options, Option<String>), String> {
    let mut opts = Options::default();
    let mut ca_out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name.as_str() {
            "--tls" => opts.tls = true,
            "--port" => {
                opts.port = value("a port")?
                    .parse()
                    .map_err(|e| format!("--port: {e}"))?
            }
            "--ca-out" => ca_out = Some(value("a file name")?),
            "--require-key" => opts.required_key = Some(value("a key")?),
            "--keepalive-max" => {
                let n: usize = value("a number")?
                    .parse()
                    .map_err(|e| format!("--keepalive-max: {e}"))?;
                opts.keepalive_max = Some(n.max(1));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((opts, ca_out))
}

fn main() -> ExitCode {
    let (opts, ca_out) = match parse() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("llmpool-testserver: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match TestServer::start(opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("llmpool-testserver: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(path), Some(pem)) = (ca_out, server.ca_pem()) {
        if let Err(e) = std::fs::write(&path, pem) {
            eprintln!("llmpool-testserver: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "LISTENING {}", server.base_url());
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::park();
    }
}

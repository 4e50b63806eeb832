//! Which process placed a hold, and whether it still runs.
//!
//! A hold of a process that died (SIGKILL, OOM, a crash) would block its
//! money until it expires. On the machine and in the PID namespace where it
//! was placed, `/proc` tells exactly: a hold whose process runs never
//! expires (a long stream keeps its money), one whose process is gone stops
//! counting at once. Holds from elsewhere (another machine sharing Redis,
//! another container) can only expire.

use std::fs;
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: u32,
    /// The PID namespace (`/proc/self/ns/pid`): a PID means nothing outside it.
    pub pidns: String,
    /// `/proc/sys/kernel/random/boot_id`: the machine (and boot) it ran on;
    /// namespace ids repeat across machines.
    pub boot: String,
    /// Start time of the process in clock ticks since boot: a reused PID
    /// has another one.
    pub start: u64,
}

/// What can be known about a hold's process from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Running,
    Gone,
    /// Another machine or namespace, or no owner recorded.
    Unknown,
}

/// This process, where `/proc` can tell.
pub(crate) fn this_owner() -> Option<Owner> {
    static OWNER: OnceLock<Option<Owner>> = OnceLock::new();
    OWNER
        .get_or_init(|| {
            let pid = std::process::id();
            Some(Owner {
                pid,
                pidns: fs::read_link("/proc/self/ns/pid")
                    .ok()?
                    .to_string_lossy()
                    .into_owned(),
                boot: fs::read_to_string("/proc/sys/kernel/random/boot_id")
                    .ok()?
                    .trim()
                    .to_string(),
                start: start_ticks(pid)?,
            })
        })
        .clone()
}

pub(crate) fn fate(o: &Owner) -> Fate {
    match this_owner() {
        Some(me) if me.pidns == o.pidns && me.boot == o.boot => {
            if start_ticks(o.pid) == Some(o.start) {
                Fate::Running
            } else {
                Fate::Gone
            }
        }
        _ => Fate::Unknown,
    }
}

/// Field 22 of `/proc/PID/stat`: the process start time since boot.
pub(crate) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields
    // after its closing parenthesis start with field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_an_exited_child_is_gone_elsewhere_is_unknown() {
        let me = this_owner().expect("/proc is available on Linux");
        assert_eq!(fate(&me), Fate::Running);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_ticks(pid);
        child.wait().unwrap();
        let gone = Owner {
            pid,
            start: start.unwrap_or(1),
            ..me.clone()
        };
        assert_eq!(fate(&gone), Fate::Gone);
        let other_ns = Owner {
            pidns: "pid:[1]".into(),
            ..gone.clone()
        };
        assert_eq!(fate(&other_ns), Fate::Unknown);
        let other_machine = Owner {
            boot: "another-boot".into(),
            ..me
        };
        assert_eq!(fate(&other_machine), Fate::Unknown);
    }
}

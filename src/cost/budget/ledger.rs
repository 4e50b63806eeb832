//! The ledger file: a budget's book on disk, shared by every process on the
//! machine that names the same file.
//!
//! Every change is a read-modify-write under an exclusive advisory lock
//! (`flock` on `<ledger>.lock`, a file that is never replaced, since the
//! ledger itself is replaced by rename on every write). So spend from all
//! processes adds up instead of the last writer's total winning, and holds
//! of calls in flight in any process count against the limit in all of
//! them. Each write goes to a temporary file of its own
//! (`<ledger>.<pid>.<n>.tmp`) and is renamed over the ledger, so a reader
//! never sees half a document.
//!
//! Holds of processes that died stop counting (see `owner`).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::book::{Book, Hold, Pending};
use super::limits::Limits;
use super::period::Period;
use super::{unix_ms, BookStore, BudgetError, Spent};

/// This process's side of the ledger: what is not written yet, and what was last seen.
#[derive(Debug, Default)]
struct Local {
    pending: Pending,
    /// The book as last read or written, for metrics when the file fails.
    last_seen: Book,
    last_error: Option<String>,
    tmp_seq: u64,
}

#[derive(Debug)]
pub(crate) struct Ledger {
    path: PathBuf,
    lock_path: PathBuf,
    period: Period,
    /// Serialises this process's threads; the file lock serialises processes.
    local: Mutex<Local>,
}

impl Ledger {
    /// Opens the ledger at `path`. A missing file is an error unless
    /// `create`, since a deleted or mistyped ledger would silently reset the
    /// spend; with `create` a new one is written at once (under the lock,
    /// so processes starting together create it once). A corrupt file or one
    /// written for another period is an error naming the file.
    pub fn open(path: PathBuf, period: Period, create: bool) -> Result<Ledger, String> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(format!(
                    "budget.ledger_file: directory {} does not exist",
                    dir.display()
                ));
            }
        }
        let mut lock_path = path.as_os_str().to_os_string();
        lock_path.push(".lock");
        let ledger = Ledger {
            lock_path: PathBuf::from(lock_path),
            path,
            period,
            local: Mutex::new(Local::default()),
        };
        let shown = ledger.path.display().to_string();
        let _guard = ledger.lock_file()?;
        match ledger.read()? {
            Some(book) => lock(&ledger.local).last_seen = book,
            None if create => {
                let mut local = lock(&ledger.local);
                ledger.write(&Book::default(), true, &mut local)?;
            }
            None => {
                return Err(format!(
                    "budget ledger {shown} does not exist: starting from zero would silently reset the spend; set budget.ledger_create: true to start a new ledger"
                ))
            }
        }
        Ok(ledger)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies `f` to the book under the file lock and writes the result,
    /// first rolling into `period_key` when given.
    /// Spend and releases left over from failed writes are merged first;
    /// `durable` writes are fsynced (spend), others are not (holds, which
    /// expire anyway). On any error nothing of `f`'s change is kept.
    pub fn update<R>(
        &self,
        period_key: Option<&str>,
        now_ms: u64,
        durable: bool,
        f: impl FnOnce(&mut Book) -> R,
    ) -> Result<R, String> {
        let mut local = lock(&self.local);
        let result = (|| {
            let _guard = self.lock_file()?;
            let mut book = self.read()?.ok_or_else(|| {
                format!(
                    "budget ledger {} was deleted; restore it, or set budget.ledger_create: true and restart to start from zero",
                    self.path.display()
                )
            })?;
            if let Some(key) = period_key {
                book.roll(key);
            }
            local.pending.apply_to(&mut book);
            book.prune(now_ms);
            let r = f(&mut book);
            let durable = durable || local.pending.has_spend();
            self.write(&book, durable, &mut local)?;
            local.pending = Pending::default();
            local.last_seen = book;
            Ok(r)
        })();
        local.last_error = result.as_ref().err().cloned();
        result
    }

    /// Keeps spend whose write failed, to add at the next successful write:
    /// money already spent is never forgotten.
    pub fn defer_spend(&self, model: &str, usd: f64, hold_id: &str) {
        let mut local = lock(&self.local);
        local.pending.keep(model, usd, Some(hold_id));
        local.last_seen.spend(model, usd);
        local.last_seen.holds.remove(hold_id);
    }

    /// Keeps a release whose write failed, for the next successful write
    /// (the hold would otherwise count until it expires).
    pub fn defer_release(&self, hold_id: &str) {
        let mut local = lock(&self.local);
        local.last_seen.holds.remove(hold_id);
        local.pending.released.push(hold_id.to_string());
    }

    /// The current book (read under the lock, not written) and the last
    /// write error; the last book seen when the file cannot be read.
    pub fn snapshot(&self, period_key: &str, now_ms: u64) -> (Book, Option<String>) {
        let mut local = lock(&self.local);
        let read = self
            .lock_file()
            .and_then(|_guard| self.read())
            .and_then(|b| {
                b.ok_or_else(|| format!("budget ledger {} was deleted", self.path.display()))
            });
        let mut book = match read {
            Ok(mut b) => {
                b.roll(period_key);
                local.pending.apply_to(&mut b);
                local.last_seen = b.clone();
                b
            }
            Err(e) => {
                local.last_error = Some(e);
                let mut b = local.last_seen.clone();
                b.roll(period_key);
                b
            }
        };
        book.prune(now_ms);
        (book, local.last_error.clone())
    }

    fn lock_file(&self) -> Result<File, String> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock_path)
            .map_err(|e| format!("budget ledger lock {}: {e}", self.lock_path.display()))?;
        // Blocking: the holder only reads and writes a small file. The lock
        // goes with the descriptor, so a process that dies releases it.
        f.lock()
            .map_err(|e| format!("budget ledger lock {}: {e}", self.lock_path.display()))?;
        Ok(f)
    }

    fn read(&self) -> Result<Option<Book>, String> {
        let shown = self.path.display().to_string();
        match fs::read_to_string(&self.path) {
            Ok(text) => Book::from_json(&text, self.period, &shown).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("budget ledger {shown}: cannot read: {e}")),
        }
    }

    fn write(&self, book: &Book, durable: bool, local: &mut Local) -> Result<(), String> {
        local.tmp_seq += 1;
        let mut tmp = self.path.as_os_str().to_os_string();
        tmp.push(format!(".{}.{}.tmp", std::process::id(), local.tmp_seq));
        let tmp = PathBuf::from(tmp);
        let res = (|| -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(book.to_json(self.period).to_string().as_bytes())?;
            if durable {
                f.sync_all()?;
            }
            drop(f);
            fs::rename(&tmp, &self.path)?;
            // Make the rename itself durable (Unix: directories can be synced).
            #[cfg(unix)]
            if durable {
                if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    File::open(dir)?.sync_all()?;
                }
            }
            Ok(())
        })();
        res.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("budget ledger {}: write failed: {e}", self.path.display())
        })
    }
}

fn lock(m: &Mutex<Local>) -> MutexGuard<'_, Local> {
    crate::sync::lock(m)
}

impl BookStore for Ledger {
    fn reserve(
        &self,
        period_key: &str,
        now_ms: u64,
        id: &str,
        hold: Hold,
        limits: &Limits<'_>,
    ) -> Result<(), BudgetError> {
        self.update(Some(period_key), now_ms, false, |b| {
            limits.place(b, period_key, id, hold)
        })
        .map_err(|e| {
            limits.unusable(
                format!("{e}: the budget cannot be checked, so the call was not sent"),
                "budget ledger",
            )
        })?
    }

    fn commit(&self, period_key: &str, now_ms: u64, spent: &Spent<'_>) -> Result<(), String> {
        self.update(Some(period_key), now_ms, true, |b| {
            spent.apply(b, period_key)
        })
        .inspect_err(|_| self.defer_spend(spent.model_key, spent.usd, spent.id))
    }

    fn release(&self, id: &str, now: SystemTime) {
        // No roll: a release spends nothing, in whatever period.
        let removed = self.update(None, unix_ms(now), false, |b| {
            b.holds.remove(id);
        });
        if removed.is_err() {
            self.defer_release(id);
        }
    }

    fn snapshot(&self, period_key: &str, now_ms: u64) -> (Book, Option<String>) {
        Ledger::snapshot(self, period_key, now_ms)
    }

    fn describe(&self) -> String {
        "ledger_file".to_string()
    }

    fn ledger_file(&self) -> Option<String> {
        Some(self.path().display().to_string())
    }
}

//! A budget's book in this process's memory (no `ledger_file`, no Redis).

use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::book::{Book, Hold};
use super::limits::Limits;
use super::{BookStore, BudgetError, Spent};

#[derive(Debug, Default)]
pub(super) struct MemoryBook(Mutex<Book>);

impl MemoryBook {
    fn lock(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock cannot leave the book inconsistent
        // in a way that matters more than refusing all further accounting
        // would.
        crate::sync::lock(&self.0)
    }
}

impl BookStore for MemoryBook {
    fn reserve(
        &self,
        period_key: &str,
        _now_ms: u64,
        id: &str,
        hold: Hold,
        limits: &Limits<'_>,
    ) -> Result<(), BudgetError> {
        limits.place(&mut self.lock(), period_key, id, hold)
    }

    fn commit(&self, period_key: &str, _now_ms: u64, spent: &Spent<'_>) -> Result<(), String> {
        spent.apply(&mut self.lock(), period_key);
        Ok(())
    }

    fn release(&self, id: &str, _now: SystemTime) {
        self.lock().holds.remove(id);
    }

    fn snapshot(&self, period_key: &str, _now_ms: u64) -> (Book, Option<String>) {
        let mut b = self.lock();
        b.roll(period_key);
        (b.clone(), None)
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}

//! The limits one reservation is checked against, and the words of a
//! refusal, the same whichever store keeps the book.

use super::book::{Book, Hold};
use super::period::Period;
use super::BudgetError;

/// The limits that apply to a call to one model.
pub(crate) struct Limits<'a> {
    pub period: Period,
    pub total: Option<f64>,
    pub model: Option<f64>,
    /// The name spend is tracked under (see `Inner::model_key`).
    pub model_key: &'a str,
}

impl Limits<'_> {
    /// Rolls `book` into `period_key` and places `hold` as `id`, or refuses.
    pub fn place(
        &self,
        book: &mut Book,
        period_key: &str,
        id: &str,
        hold: Hold,
    ) -> Result<(), BudgetError> {
        book.roll(period_key);
        self.check(book, hold.usd)?;
        book.holds.insert(id.to_string(), hold);
        Ok(())
    }

    fn check(&self, book: &Book, amount: f64) -> Result<(), BudgetError> {
        if let Some(limit) = self.total {
            check(
                self.period.budget_name(),
                limit,
                book.spent + book.held(),
                amount,
            )?;
        }
        if let Some(limit) = self.model {
            let used = book.spent_for(self.model_key) + book.held_for(self.model_key);
            check(&self.model_name(), limit, used, amount)?;
        }
        Ok(())
    }

    pub fn model_name(&self) -> String {
        format!("per-model budget for {}", self.model_key)
    }

    /// The error when the store itself cannot be used (`budget` names it).
    pub fn unusable(&self, message: String, budget: &str) -> BudgetError {
        BudgetError {
            message,
            budget: budget.into(),
            remaining_usd: 0.0,
            limit_usd: self.total.unwrap_or(0.0),
        }
    }
}

pub fn check(name: &str, limit: f64, used: f64, amount: f64) -> Result<(), BudgetError> {
    let remaining = (limit - used).max(0.0);
    if remaining <= 0.0 || used + amount > limit {
        let message = if remaining <= 0.0 {
            format!("{name} exhausted: ${remaining:.4} of ${limit:.4} remains")
        } else {
            format!("{name} exceeded: estimated ${amount:.4} but ${remaining:.4} of ${limit:.4} remains")
        };
        return Err(BudgetError {
            message,
            budget: name.to_string(),
            remaining_usd: remaining,
            limit_usd: limit,
        });
    }
    Ok(())
}

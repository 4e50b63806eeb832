//! Several stores' scripts in one round trip: before a call, the shared
//! cache's lookup, the budget's reservation and the rate-limit booking run
//! as the steps of one Lua script, each only when the one before says to
//! go on (a hit holds no money, a refused budget books no slot), so a call
//! pays one round trip where it paid three.
//!
//! Each store hands a [`Step`]: its own script's source, unchanged, run as
//! a Lua function whose `KEYS` and `ARGV` are its slices of the whole
//! script's, and the condition on its reply `r` under which later steps
//! run. [`Replies`] gives each store back its own step's reply; a step
//! that did not run (an earlier one stopped the chain, or failed, or the
//! chain could not be sent) has none, and its store then does what it did
//! before there were chains, on its own.
//!
//! A step that raises an error (a bug: a key of the wrong type) ends the
//! chain there, with the replies of the steps before it, whose writes
//! stand: Redis does not roll a script back. In a cluster the keys of one
//! script must share a slot, which the three stores' keys do not, so
//! [`RedisStore::can_chain`] is false there and every store asks on its own.

#[cfg(feature = "redis")]
pub use ::redis::Value as Reply;

/// A reply to a step. Built without the `redis` feature no store exists to
/// send one, so there is none.
#[cfg(not(feature = "redis"))]
#[derive(Debug)]
pub enum Reply {}

/// One store's script in a chain (see the module doc).
#[derive(Debug, Clone)]
pub struct Step {
    /// Names the script, so a chain of the same steps is the same script
    /// (loaded once, then sent by its SHA).
    pub name: &'static str,
    /// The script, as the store would run it alone.
    pub source: &'static str,
    /// A Lua expression on `r`, the step's reply: whether the steps after
    /// it run.
    pub go_on: &'static str,
    /// Its keys, below the prefix (the chain puts them under it).
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

/// The steps of one chain, in the order they run.
#[derive(Debug, Default)]
pub struct Chain {
    pub(super) steps: Vec<Step>,
    sealed: bool,
}

// Without the `redis` feature nothing sends a chain.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Chain {
    /// Appends `step`, unless the chain is sealed; its place, for
    /// [`Replies::get`].
    pub fn add(&mut self, step: Option<Step>) -> Option<usize> {
        if self.sealed {
            return None;
        }
        let step = step?;
        self.steps.push(step);
        Some(self.steps.len() - 1)
    }

    /// No step may follow: what comes next depends on an answer that is
    /// not asked in the chain.
    pub fn seal(&mut self) {
        self.sealed = true;
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The whole script: a function per step, run in order.
    /// ARGV starts with the number of steps, then each step's number of
    /// keys and of args; then every step's args, in order.
    pub(super) fn source(&self) -> String {
        let mut s = String::from(
            "local function slice(t, from, n)\n  local s = {}\n  for i = 1, n do s[i] = t[from + i - 1] end\n  return s\nend\n\
             local steps = tonumber(ARGV[1])\nlocal out = {}\nlocal k, a = 1, 2 + 2 * steps\n",
        );
        for (i, step) in self.steps.iter().enumerate() {
            let (kn, an) = (2 + 2 * i, 3 + 2 * i);
            s.push_str(&format!(
                "do\n  local kn, an = tonumber(ARGV[{kn}]), tonumber(ARGV[{an}])\n  \
                 local ok, r = pcall(function(KEYS, ARGV)\n{}\nend, slice(KEYS, k, kn), slice(ARGV, a, an))\n  \
                 if not ok then return out end\n  out[#out + 1] = r\n  \
                 if not ({}) then return out end\n  k, a = k + kn, a + an\nend\n",
                step.source.trim(),
                step.go_on
            ));
        }
        s.push_str("return out\n");
        s
    }

    /// The names of the steps: the chain's identity.
    pub(super) fn names(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.name).collect()
    }

    /// ARGV as [`Chain::source`] reads it.
    pub(super) fn args(&self) -> Vec<String> {
        let mut args = vec![self.steps.len().to_string()];
        for s in &self.steps {
            args.push(s.keys.len().to_string());
            args.push(s.args.len().to_string());
        }
        for s in &self.steps {
            args.extend(s.args.iter().cloned());
        }
        args
    }

    /// Every step's keys, in order.
    pub(super) fn keys(&self) -> Vec<&str> {
        self.steps
            .iter()
            .flat_map(|s| s.keys.iter().map(String::as_str))
            .collect()
    }
}

/// The replies of the steps that ran, in order.
#[derive(Debug, Default)]
pub struct Replies {
    values: Vec<Reply>,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Replies {
    /// No step ran (no chain was sent, or it failed).
    pub fn none() -> Replies {
        Replies { values: Vec::new() }
    }

    pub(super) fn new(values: Vec<Reply>) -> Replies {
        Replies { values }
    }

    /// The reply of the step at `at` (from [`Chain::add`]), if it ran.
    pub fn get(&self, at: Option<usize>) -> Option<&Reply> {
        self.values.get(at?)
    }

    /// How many steps ran.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &'static str, keys: &[&str], args: &[&str]) -> Step {
        Step {
            name,
            source: "return 1",
            go_on: "r == 1",
            keys: keys.iter().map(|k| k.to_string()).collect(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn a_chain_lays_out_each_steps_keys_and_args_in_turn() {
        let mut c = Chain::default();
        assert_eq!(c.add(None), None);
        assert_eq!(c.add(Some(step("a", &["k1"], &["x", "y"]))), Some(0));
        assert_eq!(c.add(Some(step("b", &["k2", "k3"], &[]))), Some(1));
        assert_eq!(c.names(), ["a", "b"]);
        assert_eq!(c.keys(), ["k1", "k2", "k3"]);
        assert_eq!(c.args(), ["2", "1", "2", "2", "0", "x", "y"]);
        let src = c.source();
        assert_eq!(src.matches("pcall(function(KEYS, ARGV)").count(), 2);
        assert!(src.contains("if not (r == 1) then return out end"));
        c.seal();
        assert_eq!(c.add(Some(step("c", &[], &[]))), None);
        assert_eq!(c.len(), 2);
        let r = Replies::none();
        assert!(r.get(Some(0)).is_none() && r.get(None).is_none());
    }
}

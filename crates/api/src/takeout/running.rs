//! The bound on takeouts in progress: one per owner, and
//! [`MAX_TAKEOUTS`] on the node (each holds a store connection's worth of
//! paging and a compressor; an owner cannot take them all).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::error::{ApiError, Result};

/// Takeouts written at once on one node.
pub(crate) const MAX_TAKEOUTS: usize = 4;
/// What `Retry-After` says when the bound is reached.
const RETRY_AFTER_S: u64 = 30;

/// The owners whose takeout is being written.
#[derive(Clone, Default)]
pub(crate) struct Running(Arc<Mutex<HashSet<String>>>);

/// Held while one takeout is written; dropping it frees the place.
pub(crate) struct Place {
    running: Running,
    owner: String,
}

impl Running {
    pub(crate) fn start(&self, owner: &str) -> Result<Place> {
        let mut owners = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let busy = if owners.contains(owner) {
            "your takeout is being prepared already; wait for that download to finish"
        } else if owners.len() >= MAX_TAKEOUTS {
            "the server is preparing as many takeouts as it can; try again shortly"
        } else {
            owners.insert(owner.to_owned());
            return Ok(Place {
                running: self.clone(),
                owner: owner.to_owned(),
            });
        };
        Err(ApiError::TooMany {
            detail: busy.into(),
            retry_after_s: Some(RETRY_AFTER_S),
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut owners = self.running.0.lock().unwrap_or_else(|e| e.into_inner());
        owners.remove(&self.owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_owner_and_a_bound_on_the_node() {
        let running = Running::default();
        let ann = running.start("ann").unwrap();
        assert!(running.start("ann").is_err());
        let others: Vec<_> = (1..MAX_TAKEOUTS)
            .map(|i| running.start(&format!("o{i}")).unwrap())
            .collect();
        assert!(running.start("bob").is_err());
        drop(ann);
        let ann_again = running.start("ann").unwrap();
        drop((ann_again, others));
        assert!(running.start("bob").is_ok());
    }
}

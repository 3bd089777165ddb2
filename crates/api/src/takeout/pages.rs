//! The owner's measurements and activity segments, a page at a time.

use std::sync::Arc;

use tributary_store::{ActivitySegment, Row, Store, MAX_ABS_TIME_MS};

use crate::data::EXPORT_PAGE;

/// Segments per store call.
const SEGMENT_PAGE: usize = 1_000;

pub(super) fn store_failed(error: tributary_store::Error) -> std::io::Error {
    std::io::Error::other(format!("store: {error}"))
}

/// Every measurement of one owner in `(time, message id, seq)` order, by
/// the store's export pages.
pub(crate) struct RowPages {
    store: Arc<Store>,
    owner: String,
    after: Option<(i64, String, u32)>,
    done: bool,
}

impl RowPages {
    pub(crate) fn new(store: Arc<Store>, owner: String) -> RowPages {
        RowPages {
            store,
            owner,
            after: None,
            done: false,
        }
    }

    /// The next page, `None` after the last.
    pub(crate) async fn next(&mut self) -> std::io::Result<Option<Vec<Row>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .store
            .export(&self.owner, self.after.take(), EXPORT_PAGE)
            .await
            .map_err(store_failed)?;
        self.done = page.len() < EXPORT_PAGE;
        self.after = page
            .last()
            .map(|r| (r.time_ms, r.message_id.clone(), r.seq));
        Ok((!page.is_empty()).then_some(page))
    }
}

/// Every activity segment of one owner in `(start, device)` order.
///
/// The store answers by time range (segments overlapping it), so each page
/// asks from the last start seen on and drops what it already had: the
/// segments starting before that (one device's segments do not overlap, so
/// at most one per device) and those at that start up to the last device.
pub(crate) struct SegmentPages {
    store: Arc<Store>,
    owner: String,
    /// The last segment handed out, as `(start_ms, device)`.
    last: Option<(i64, String)>,
    done: bool,
}

impl SegmentPages {
    pub(crate) fn new(store: Arc<Store>, owner: String) -> SegmentPages {
        SegmentPages {
            store,
            owner,
            last: None,
            done: false,
        }
    }

    /// The next page, `None` after the last.
    pub(crate) async fn next(&mut self) -> std::io::Result<Option<Vec<ActivitySegment>>> {
        while !self.done {
            let from_ms = self.last.as_ref().map_or(-MAX_ABS_TIME_MS, |l| l.0);
            let page = self
                .store
                .activity_timeline(&self.owner, from_ms, MAX_ABS_TIME_MS, SEGMENT_PAGE)
                .await
                .map_err(store_failed)?;
            let full = page.len() == SEGMENT_PAGE;
            let fresh: Vec<ActivitySegment> = page
                .into_iter()
                .filter(|s| match &self.last {
                    None => true,
                    Some((start, device)) => (s.start_ms, &s.device) > (*start, device),
                })
                .collect();
            // A full page with nothing new would ask the same again: only
            // possible with more devices overlapping than a page holds.
            self.done = !full || fresh.is_empty();
            if let Some(last) = fresh.last() {
                self.last = Some((last.start_ms, last.device.clone()));
                return Ok(Some(fresh));
            }
        }
        Ok(None)
    }
}

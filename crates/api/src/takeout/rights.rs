//! The takeout's parts about the owner's rights: consents and their
//! receipts, the audit log, and pooled packs (docs/takeout.md).

use std::collections::HashSet;

use super::pages::store_failed;
use super::stream::Packing;
use super::{pretty, JsonArray, Part, Takeout};

/// Consents, receipts and audit entries per store call.
const PAGE: usize = 500;
/// Packs and ledger entries: the most the API lists too.
const PACKS_MAX: usize = 200;

fn api_failed(error: crate::error::ApiError) -> std::io::Error {
    std::io::Error::other(error.to_string())
}

/// Pages newest first by a millisecond time, as the store lists consents and
/// receipts: the next page starts at the last page's oldest millisecond
/// (included, so that items sharing it are not skipped), and items already
/// written are skipped by id.
#[derive(Default)]
struct ByTime {
    before_ms: Option<i64>,
    /// Ids written at the oldest millisecond so far.
    at_boundary: HashSet<String>,
    done: bool,
}

impl ByTime {
    /// Keeps the new items of `page` (each with its id and time) and moves on.
    fn next<T>(&mut self, page: Vec<T>, key: impl Fn(&T) -> (String, i64)) -> Vec<T> {
        let full = page.len() == PAGE;
        let fresh: Vec<T> = page
            .into_iter()
            .filter(|item| !self.at_boundary.contains(&key(item).0))
            .collect();
        match fresh.last().map(|item| key(item).1) {
            Some(oldest) if full => {
                if self.before_ms != Some(oldest + 1) {
                    self.at_boundary.clear();
                }
                self.at_boundary.extend(
                    fresh
                        .iter()
                        .map(&key)
                        .filter(|(_, ms)| *ms == oldest)
                        .map(|(id, _)| id),
                );
                self.before_ms = Some(oldest + 1);
            }
            _ => self.done = true,
        }
        fresh
    }
}

impl Takeout {
    pub(super) async fn consents(&mut self) -> std::io::Result<()> {
        self.zip.start(Part::Consents.path(), Packing::Deflate)?;
        let mut array = JsonArray::default();
        let mut pages = ByTime::default();
        while !pages.done {
            let page = self
                .store
                .owner_consents(&self.owner, pages.before_ms, PAGE)
                .await
                .map_err(store_failed)?;
            let mut views = Vec::new();
            for consent in pages.next(page, |c| (c.id.clone(), c.created_ms)) {
                let view = crate::consent::view(&self.store, consent)
                    .await
                    .map_err(api_failed)?;
                views.push(serde_json::to_value(view).unwrap_or_default());
            }
            let text = array.items(views.into_iter());
            self.zip.write(text.as_bytes()).await?;
        }
        self.zip.write(array.end().as_bytes()).await
    }

    pub(super) async fn receipts(&mut self) -> std::io::Result<()> {
        let mut pages = ByTime::default();
        while !pages.done {
            let page = self
                .store
                .owner_receipts(&self.owner, pages.before_ms, PAGE)
                .await
                .map_err(store_failed)?;
            for receipt in pages.next(page, |r| (r.receipt_id.clone(), r.created_ms)) {
                self.zip.start(
                    &format!("receipts/{}.jws", receipt.receipt_id),
                    Packing::Store,
                )?;
                self.zip.write(receipt.jws.as_bytes()).await?;
            }
        }
        let participations = self
            .store
            .owner_participations(&self.owner, PACKS_MAX)
            .await
            .map_err(store_failed)?;
        for p in participations {
            let receipts = [
                ("joined", Some(p.receipt)),
                ("withdrawn", p.withdraw_receipt),
            ];
            for (what, jws) in receipts {
                if let Some(jws) = jws {
                    let path = format!("receipts/pack-{}-{what}.jws", p.pack_id);
                    self.zip.start(&path, Packing::Store)?;
                    self.zip.write(jws.as_bytes()).await?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn audit(&mut self) -> std::io::Result<()> {
        self.zip.start(Part::Audit.path(), Packing::Deflate)?;
        let mut array = JsonArray::default();
        let mut before = None;
        loop {
            let page = self
                .store
                .owner_audit(&self.owner, before, PAGE)
                .await
                .map_err(store_failed)?;
            let full = page.len() == PAGE;
            before = page.last().map(|e| e.id);
            let views = page.into_iter().map(|e| {
                serde_json::to_value(crate::audit::EntryView::from(e)).unwrap_or_default()
            });
            let text = array.items(views);
            self.zip.write(text.as_bytes()).await?;
            if !full {
                break;
            }
        }
        self.zip.write(array.end().as_bytes()).await
    }

    pub(super) async fn packs(&mut self) -> std::io::Result<()> {
        let store = &self.store;
        let participations = store
            .owner_participations(&self.owner, PACKS_MAX)
            .await
            .map_err(store_failed)?;
        let settings = store
            .pack_settings(&self.owner)
            .await
            .map_err(store_failed)?;
        let ledger = store
            .owner_ledger(&self.owner, PACKS_MAX)
            .await
            .map_err(store_failed)?;
        let packs = serde_json::json!({
            "participations": participations.iter().map(|p| serde_json::json!({
                "pack": p.pack_id, "status": p.status, "joined_ms": p.joined_ms,
                "withdrawn_ms": p.withdrawn_ms,
            })).collect::<Vec<_>>(),
            "budget_ceiling": settings.budget_ceiling,
            "shared_profile": {"age_band": settings.age_band, "region": settings.region},
            "ledger": ledger.iter().map(|e| serde_json::json!({
                "pack": e.pack_id, "seq": e.seq, "epsilon": e.epsilon,
                "amount_cents": e.amount_cents, "currency": e.currency, "at_ms": e.at_ms,
            })).collect::<Vec<_>>(),
        });
        self.whole(Part::Packs, &pretty(&packs)).await
    }
}

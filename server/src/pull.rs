//! Incremental pull: a page of the change log as one caller sees it, each
//! change carrying the entity's current view. The top layer over the change
//! log, cases and reference data; none of them imports it.

use gridwork_protocol::api::{self, Change, ChangeBody, Echo, PullResponse, SkipSpan};

use crate::auth::Caller;
use crate::db::Tx;
use crate::error::Result;
use crate::{cases, changes, reference, scope};

/// The most cursors one pull skips. Skipping still reads the skipped index
/// entries, so a span list must not make one request read the whole log;
/// spans past this budget are read and sent as usual (skipping only saves).
const MAX_SKIPPED_CURSORS: i64 = 100_000;

/// The spans worth skipping: within `since` and the log's end (committed
/// sequence numbers), within the budget.
fn usable_spans(tx: &mut dyn Tx, since: i64, skip: &[SkipSpan]) -> Result<Vec<SkipSpan>> {
    if skip.is_empty() {
        return Ok(Vec::new());
    }
    let newest = changes::newest(tx)?;
    let mut budget = MAX_SKIPPED_CURSORS;
    let mut usable = Vec::new();
    for span in skip {
        let after = span.after.max(since);
        let until = span.until.min(newest).min(after.saturating_add(budget));
        if until > after {
            budget -= until - after;
            usable.push(SkipSpan { after, until });
        }
    }
    Ok(usable)
}

pub fn pull(tx: &mut dyn Tx, caller: &Caller, since: i64, limit: u32, skip: &[SkipSpan], now_ms: i64) -> Result<PullResponse> {
    let skip = usable_spans(tx, since, skip)?;
    page(tx, caller, since, None, limit, &skip, now_ms)
}

/// What pull brings for the cursors `after < cursor <= until` (a push's
/// own changes, read after it committed): the push's echo. The span ends
/// early when one page does not hold them all; None when the caller sees
/// none of them.
pub fn echo(tx: &mut dyn Tx, caller: &Caller, after: i64, until: i64, now_ms: i64) -> Result<Option<Echo>> {
    let page = page(tx, caller, after, Some(until), api::MAX_PULL_LIMIT, &[], now_ms)?;
    let until = if page.has_more { page.next_cursor } else { until };
    Ok((!page.changes.is_empty()).then_some(Echo { span: SkipSpan { after, until }, changes: page.changes }))
}

/// A page of changes after `since` (up to `until`), without `skip`.
fn page(tx: &mut dyn Tx, caller: &Caller, since: i64, until: Option<i64>, limit: u32, skip: &[SkipSpan], now_ms: i64) -> Result<PullResponse> {
    let (entries, has_more) = changes::read(tx, &scope::caller_keys(caller), since, until, limit, skip)?;
    let mut next_cursor = entries.last().map(|e| e.seq).unwrap_or(since);
    if !has_more {
        // Everything after the cursor was sent or skipped, so the cursor may
        // pass the skipped spans too (they end at the log's end at most:
        // beyond it they name nothing yet).
        next_cursor = skip.iter().map(|s| s.until).fold(next_cursor, i64::max);
    }

    // Within a page only an entity's last change matters.
    let last: Vec<&changes::Entry> = entries
        .iter()
        .enumerate()
        .filter(|(index, entry)| !entries[index + 1..].iter().any(|later| later.entity_kind == entry.entity_kind && later.entity_id == entry.entity_id))
        .map(|(_, entry)| entry)
        .collect();
    // The page's cases in one query per table.
    let wanted: Vec<String> = last.iter().filter(|e| !e.removal && e.entity_kind == "incident").map(|e| e.entity_id.clone()).collect();
    let mut views = cases::load_views_for(tx, caller, &wanted)?;
    let mut page = Vec::new();
    for entry in last {
        let body = if entry.removal {
            Some(ChangeBody::Remove)
        } else {
            match entry.entity_kind.as_str() {
                "incident" => views.remove(&entry.entity_id).map(|view| ChangeBody::Upsert { data: serde_json::to_value(view).expect("serializes") }),
                other => reference::load(tx, other, &entry.entity_id)?.map(|data| ChangeBody::Upsert { data }),
            }
        };
        // No body: the entity has since left the caller's view; the change
        // that took it away follows.
        if let Some(body) = body {
            page.push(Change { cursor: entry.seq, entity_kind: entry.entity_kind.clone(), entity_id: entry.entity_id.clone(), body });
        }
    }
    Ok(PullResponse { changes: page, next_cursor, has_more, server_time_ms: now_ms })
}

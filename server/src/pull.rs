//! Incremental pull: a page of the change log as one caller sees it, each
//! change carrying the entity's current view. The top layer over the change
//! log, cases and reference data; none of them imports it.

use gridwork_protocol::api::{Change, ChangeBody, PullResponse, SkipSpan};

use crate::auth::Caller;
use crate::db::Tx;
use crate::error::Result;
use crate::{cases, changes, reference, scope};

pub fn pull(tx: &mut dyn Tx, caller: &Caller, since: i64, limit: u32, skip: &[SkipSpan], now_ms: i64) -> Result<PullResponse> {
    let (entries, has_more) = changes::read(tx, &scope::caller_keys(caller), since, limit, skip)?;
    let mut next_cursor = entries.last().map(|e| e.seq).unwrap_or(since);
    if !has_more && !skip.is_empty() {
        // Everything after the cursor was sent or skipped, so the cursor may
        // pass the skipped spans too (up to the log's end: a span beyond it
        // names nothing yet and must not move the cursor past future
        // changes). Sequence numbers below the newest are committed.
        let newest = changes::newest(tx)?;
        let skipped_to = skip.iter().map(|s| s.until.min(newest)).max().unwrap_or(since);
        next_cursor = next_cursor.max(skipped_to);
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

//! What a device reads from a server, hostile: every reply body type, and a
//! pulled page applied to a real store. Any reply ends in a typed error or
//! a consistent store, never a panic.
#![no_main]

use gridwork_core::sync::apply;
use gridwork_protocol::api::{BlobStatus, ErrorBody, PullResponse, PushResponse, TokenResponse};
use libfuzzer_sys::fuzz_target;
use rusqlite::Connection;

thread_local! {
    static STORE: Connection = {
        let mut conn = Connection::open_in_memory().expect("in-memory store");
        gridwork_core::store::migrations::migrate(&mut conn).expect("schema");
        conn
    };
}

fuzz_target!(|bytes: &[u8]| {
    let _ = serde_json::from_slice::<PushResponse>(bytes);
    let _ = serde_json::from_slice::<TokenResponse>(bytes);
    let _ = serde_json::from_slice::<BlobStatus>(bytes);
    let _ = serde_json::from_slice::<ErrorBody>(bytes);
    if let Ok(page) = serde_json::from_slice::<PullResponse>(bytes) {
        STORE.with(|conn| {
            // One transaction per page, as the runner applies it; rolled back
            // so the store stays small across runs.
            conn.execute_batch("BEGIN").expect("begin");
            let _ = apply::apply_page(conn, &page.changes);
            let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity check runs");
            assert_eq!(ok, "ok");
            conn.execute_batch("ROLLBACK").expect("rollback");
        });
    }
});

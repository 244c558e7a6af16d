//! `outbox`: how fast operations are queued through `outbox::enqueue` on the
//! real encrypted store, against raw SQLite INSERTs of a row of the same
//! size into a plain file with the same pragmas.

use std::path::Path;
use std::time::{Duration, Instant};

use gridwork_core::clock::Timestamp;
use gridwork_core::outbox::{self, NewOperation};
use gridwork_core::{GeoPoint, Gridwork, Uuid};
use gridwork_protocol::{Named, OperationKind, SubmitIncident};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use crate::report::{self, Table, Target};
use crate::BenchResult;

/// A realistic submit-incident operation, as `capture::submit` queues one.
fn operation(n: usize, now: Timestamp) -> NewOperation {
    let incident_id = Uuid::now_v7();
    let payload = SubmitIncident {
        incident_id,
        category_code: "0102".to_owned(),
        description: format!("小区东门暴露垃圾，已堆放两天，影响通行 #{n}"),
        address: Some("黄浦区南京东路街道 贵州路 102 弄".to_owned()),
        location: Some(GeoPoint { lat: 31.2304, lon: 121.4737, accuracy_m: Some(8.0) }),
        grid_code: Some("G-001".to_owned()),
        captured_at: now,
        submitted_at: now,
        photos: Vec::new(),
        resolved_on_spot: None,
        resubmission_of: None,
    };
    NewOperation {
        entity_id: incident_id,
        entity_kind: "incident",
        kind: OperationKind::SubmitIncident,
        payload: serde_json::to_value(&payload).expect("payload serializes"),
        depends_on: None,
        blob: None,
    }
}

/// Bytes of the values `enqueue` stores for `op`: text columns as written,
/// eight bytes per integer column (seq, payload_schema, attempts,
/// next_attempt_ms, blob_bytes, two timestamps).
fn stored_bytes(op: &NewOperation) -> usize {
    36 + 36 + op.entity_kind.len() + op.kind.as_str().len() + op.payload.to_string().len() + "pending".len() + 7 * 8
}

#[derive(Clone, Copy, PartialEq)]
enum Pattern {
    /// One IMMEDIATE transaction per operation, as a user action commits.
    PerOperation,
    /// All operations in one transaction.
    Batched,
}

struct Ours {
    elapsed: Duration,
    row_bytes: usize,
    /// `CREATE` statements of the outbox table and its indexes.
    schema: Vec<String>,
}

fn ours(dir: &Path, count: usize, pattern: Pattern) -> BenchResult<Ours> {
    let gridwork = Gridwork::open(gridwork_tests::config(dir, "bench-worker"))?;
    let now = gridwork.now();
    let ops: Vec<NewOperation> = (0..count).map(|n| operation(n, now)).collect();
    let row_bytes = ops.iter().map(stored_bytes).sum::<usize>() / count.max(1);
    let started = Instant::now();
    gridwork.with_connection(|conn| {
        match pattern {
            Pattern::PerOperation => {
                for op in &ops {
                    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    outbox::enqueue(&tx, op, gridwork.now())?;
                    tx.commit()?;
                }
            }
            Pattern::Batched => {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                for op in &ops {
                    outbox::enqueue(&tx, op, gridwork.now())?;
                }
                tx.commit()?;
            }
        }
        Ok(())
    })?;
    let elapsed = started.elapsed();
    let queued: i64 = gridwork.with_connection(|conn| Ok(conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?))?;
    assert_eq!(queued as usize, count, "every operation is queued");
    let schema = gridwork.with_connection(|conn| {
        let mut stmt = conn.prepare("SELECT sql FROM sqlite_master WHERE tbl_name = 'outbox' AND sql IS NOT NULL ORDER BY type DESC")?;
        let rows = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(rows)
    })?;
    Ok(Ours { elapsed, row_bytes, schema })
}

fn open_plain(path: &Path) -> BenchResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;",
    )?;
    Ok(conn)
}

/// Where the batched gap goes: our outbox table, indexes and INSERT (a copy
/// of `outbox::enqueue`'s statement and values) on a plain file, batched.
fn plain_outbox_schema(path: &Path, schema: &[String], count: usize) -> BenchResult<Duration> {
    let mut conn = open_plain(path)?;
    for statement in schema {
        conn.execute_batch(statement)?;
    }
    let now = Timestamp { device_ms: 1_795_000_000_000, corrected_ms: 1_795_000_000_000 };
    let ops: Vec<NewOperation> = (0..count).map(|n| operation(n, now)).collect();
    let started = Instant::now();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for op in &ops {
        tx.prepare_cached(
            "INSERT INTO outbox (op_id, entity_id, entity_kind, kind, payload, payload_schema, state, attempts,
                 next_attempt_ms, depends_on, blob_sha256, blob_bytes, created_device_ms, created_corrected_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            Uuid::now_v7().to_string(),
            op.entity_id.to_string(),
            op.entity_kind,
            op.kind.as_str(),
            op.payload.to_string(),
            op.kind.current_schema(),
            now.device_ms,
            op.depends_on.map(|d| d.to_string()),
            op.blob.as_ref().map(|(sha, _)| sha.as_str()),
            op.blob.as_ref().map(|(_, bytes)| *bytes as i64).unwrap_or(0),
            now.device_ms,
            now.corrected_ms,
        ])?;
    }
    tx.commit()?;
    Ok(started.elapsed())
}

/// The peer: a plain SQLite file opened like ours (same SQLite build, no
/// key), WAL, synchronous=FULL, a table with a rowid and one text column.
fn peer(path: &Path, count: usize, row_bytes: usize, pattern: Pattern) -> BenchResult<Duration> {
    let mut conn = open_plain(path)?;
    conn.execute_batch("CREATE TABLE ops (id INTEGER PRIMARY KEY, body TEXT NOT NULL);")?;
    // Distinct rows of the same size as ours (minus the 8-byte rowid).
    let rows: Vec<String> = (0..count)
        .map(|n| {
            let head = format!("{n:08}");
            format!("{head}{}", "x".repeat(row_bytes.saturating_sub(8 + head.len())))
        })
        .collect();
    let insert = "INSERT INTO ops (body) VALUES (?1)";
    let started = Instant::now();
    match pattern {
        Pattern::PerOperation => {
            for row in &rows {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.prepare_cached(insert)?.execute(params![row])?;
                tx.commit()?;
            }
        }
        Pattern::Batched => {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for row in &rows {
                tx.prepare_cached(insert)?.execute(params![row])?;
            }
            tx.commit()?;
        }
    }
    Ok(started.elapsed())
}

pub fn run(batched_count: usize, per_op_count: usize) -> BenchResult<()> {
    eprintln!("outbox: {per_op_count} operations one commit each, {batched_count} in one commit");
    let dir = tempfile::Builder::new().prefix("gridwork-bench-outbox").tempdir()?;
    let per_sec = |count: usize, d: Duration| count as f64 / d.as_secs_f64();

    let single = ours(&dir.path().join("ours-single"), per_op_count, Pattern::PerOperation)?;
    let (ours_single, row_bytes) = (single.elapsed, single.row_bytes);
    let peer_single = peer(&dir.path().join("peer-single.db"), per_op_count, row_bytes, Pattern::PerOperation)?;
    let ours_batch = ours(&dir.path().join("ours-batch"), batched_count, Pattern::Batched)?.elapsed;
    let peer_batch = peer(&dir.path().join("peer-batch.db"), batched_count, row_bytes, Pattern::Batched)?;
    let plain_schema_batch = plain_outbox_schema(&dir.path().join("plain-outbox.db"), &single.schema, batched_count)?;

    let mut table = Table::new(
        format!("outbox: insert rate, ~{row_bytes} bytes per row, WAL + synchronous=FULL"),
        "raw rusqlite INSERT into a plain (unencrypted) SQLite file, same pragmas, same row size",
    );
    table.row(
        &format!("one transaction per operation ({per_op_count} ops)"),
        Some(per_sec(per_op_count, ours_single)),
        Some(per_sec(per_op_count, peer_single)),
        report::rate,
    );
    table.row(
        &format!("one transaction for all ({batched_count} ops)"),
        Some(per_sec(batched_count, ours_batch)),
        Some(per_sec(batched_count, peer_batch)),
        report::rate,
    );
    table.note(format!(
        "per operation: ours {:.1} us vs peer {:.1} us committed singly, {:.1} us vs {:.1} us batched; higher rate is better",
        ours_single.as_secs_f64() * 1e6 / per_op_count as f64,
        peer_single.as_secs_f64() * 1e6 / per_op_count as f64,
        ours_batch.as_secs_f64() * 1e6 / batched_count as f64,
        peer_batch.as_secs_f64() * 1e6 / batched_count as f64,
    ));
    table.note(format!(
        "breakdown, batched: our outbox schema and INSERT on a plain file (no SQLCipher) reach {} ({:.1} us/op)",
        report::rate(per_sec(batched_count, plain_schema_batch)),
        plain_schema_batch.as_secs_f64() * 1e6 / batched_count as f64,
    ));
    table.note("ours: SQLCipher page encryption, UUIDv7 op id, JSON payload text, UNIQUE(op_id) and two indexes");
    table.print();
    let single = (per_sec(per_op_count, ours_single), per_sec(per_op_count, peer_single));
    report::record("outbox: one durable transaction per operation", "op/s", single.0, Some(single.1), Target::RatioAtLeast(0.83));
    let batch = (per_sec(batched_count, ours_batch), per_sec(batched_count, peer_batch));
    report::record(&format!("outbox: {batched_count} operations in one transaction"), "op/s", batch.0, Some(batch.1), Target::RatioAtLeast(0.75));
    Ok(())
}

//! The sync policy, tested on the engine alone: no store, no network, no
//! clock. Each test plays the driver: it polls, answers requests with
//! events, and checks the requests and records that come out.

use super::*;
use gridwork_protocol::api::OperationResult;

fn ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::now_v7()).collect()
}

fn applied(ops: &[Uuid]) -> PushResponse {
    PushResponse {
        results: ops.iter().map(|op| OperationResult { op_id: *op, outcome: OperationOutcome::Applied { entity_version: 1 } }).collect(),
        server_time_ms: 0,
        echo: None,
    }
}

fn http(status: u16, code: &str) -> TransportError {
    TransportError::Http { status, code: code.into(), message: "m".into(), retry_after_ms: None }
}

fn page(changes: usize, has_more: bool, next_cursor: i64) -> PullResponse {
    PullResponse { changes: Vec::with_capacity(changes), next_cursor, has_more, server_time_ms: 0 }
}

fn blob(sha256: &str, size: u64, offset: u64, complete: bool) -> BlobStatus {
    BlobStatus { sha256: sha256.into(), size, offset, complete }
}

/// A running engine with a run started and a trigger fed.
fn started(seed: u64, trigger: Trigger) -> SyncEngine {
    let mut e = SyncEngine::new(seed);
    e.start_run(0);
    e.handle(Event::Wake(trigger), 0);
    e
}

/// Poll past the records (returning them) to the next request or Finish.
fn next(e: &mut SyncEngine, now: i64) -> (Vec<Record>, Action) {
    let mut records = Vec::new();
    loop {
        match e.poll(now) {
            Action::Record(r) => records.push(r),
            other => return (records, other),
        }
    }
}

fn request(e: &mut SyncEngine, now: i64) -> Action {
    next(e, now).1
}

/// Answer push, upload and pull with "nothing (more)" until the round ends.
fn finish_round(e: &mut SyncEngine, now: i64) -> Action {
    loop {
        match request(e, now) {
            Action::Push { .. } | Action::NextUpload | Action::NextPreview { .. } | Action::NextThumbnail { .. } => e.handle(Event::NothingReady, now),
            Action::Pull { .. } => e.handle(Event::Pulled(Ok(page(0, false, 0))), now),
            Action::CheckRemaining { .. } => e.handle(Event::Remaining { ready: false }, now),
            other => return other,
        }
    }
}

#[test]
fn a_round_is_push_upload_pull_then_idle() {
    let mut e = SyncEngine::new(7);
    e.start_run(40);
    assert_eq!(e.poll(0), Action::CheckRemaining { uploads_allowed: true }, "idle: only asks whether work is ready");
    e.handle(Event::Remaining { ready: false }, 0);
    assert_eq!(e.poll(0), Action::Finish);
    assert!(e.finish_run().completed);

    let mut e = SyncEngine::new(7);
    e.start_run(40);
    e.handle(Event::Wake(Trigger::OperationQueued), 0);
    assert_eq!(request(&mut e, 0), Action::Push { limit: FIRST_PUSH_BATCH });
    let ops = ids(3);
    e.handle(Event::Pushed { ops: ops.clone(), result: Ok(applied(&ops)) }, 0);
    let (records, action) = next(&mut e, 0);
    assert_eq!(records[0], Record::Verdicts(ops.iter().map(|op| (*op, Verdict::Acknowledge)).collect()));
    assert_eq!(records[1], Record::ServerTime(0));
    assert_eq!(action, Action::Push { limit: FIRST_PUSH_BATCH * 2 }, "more ready operations, in a larger batch");
    e.handle(Event::NothingReady, 0);
    assert_eq!(request(&mut e, 0), Action::NextUpload);
    e.handle(Event::NothingReady, 0);
    assert_eq!(request(&mut e, 0), Action::Pull { cursor: 40, limit: PULL_PAGE, skip: vec![] });
    e.handle(Event::Pulled(Ok(page(0, true, 90))), 0);
    let (records, action) = next(&mut e, 0);
    assert!(matches!(records[0], Record::ApplyPage(_)));
    assert_eq!(action, Action::Pull { cursor: 90, limit: PULL_PAGE, skip: vec![] }, "the next page from the new cursor");
    e.handle(Event::Pulled(Ok(page(0, false, 95))), 0);
    assert_eq!(request(&mut e, 0), Action::NextThumbnail { skip: vec![] }, "then the thumbnails the case screens need");
    e.handle(Event::NothingReady, 0);
    assert_eq!(request(&mut e, 0), Action::CheckRemaining { uploads_allowed: true });
    e.handle(Event::Remaining { ready: false }, 0);
    assert_eq!(request(&mut e, 0), Action::Finish);
    let report = e.finish_run();
    assert_eq!((report.pushed, report.completed, report.next_wake_ms), (3, true, None));
}

#[test]
fn transient_failures_back_off_with_growing_jittered_delays_and_honour_retry_after() {
    let mut e = SyncEngine::new(42);
    let mut delays = Vec::new();
    for _ in 0..8 {
        e.start_run(0);
        e.handle(Event::Wake(Trigger::TimerFired), 0);
        e.handle(Event::Wake(Trigger::ManualRetry), 0);
        assert_eq!(request(&mut e, 0), Action::Push { limit: FIRST_PUSH_BATCH });
        let ops = ids(1);
        e.handle(Event::Pushed { ops: ops.clone(), result: Err(http(503, "unavailable")) }, 0);
        let (records, action) = next(&mut e, 0);
        assert_eq!(records, vec![Record::Verdicts(vec![(ops[0], Verdict::RetryLater("transient"))])]);
        assert_eq!(action, Action::Finish);
        let report = e.finish_run();
        assert_eq!(report.errors.transient, 1);
        delays.push(report.next_wake_ms.expect("a backoff"));
    }
    assert!(delays.iter().all(|d| *d >= BASE_BACKOFF_MS / 2 && *d <= MAX_BACKOFF_MS + BASE_BACKOFF_MS));
    assert!(delays[6] + delays[7] > delays[0] + delays[1], "grows: {delays:?}");
    // Retry-After wins when longer.
    e.start_run(0);
    e.handle(Event::Wake(Trigger::ManualRetry), 10);
    let ops = ids(1);
    assert_eq!(request(&mut e, 10), Action::Push { limit: FIRST_PUSH_BATCH });
    let long = TransportError::Http { status: 429, code: "slow_down".into(), message: "m".into(), retry_after_ms: Some(3_600_000) };
    e.handle(Event::Pushed { ops, result: Err(long) }, 10);
    assert_eq!(request(&mut e, 10), Action::Finish);
    assert_eq!(e.finish_run().next_wake_ms, Some(10 + MAX_BACKOFF_MS * 2));
    // A queued operation does not cut a backoff short; a manual retry does.
    e.start_run(0);
    e.handle(Event::Wake(Trigger::OperationQueued), 20);
    assert_eq!(request(&mut e, 20), Action::Finish);
    e.finish_run();
    e.start_run(0);
    e.handle(Event::Wake(Trigger::ManualRetry), 20);
    assert_eq!(request(&mut e, 20), Action::Push { limit: FIRST_PUSH_BATCH });
    // Success resets the exponent.
    e.handle(Event::NothingReady, 20);
    assert_eq!(e.failures, 0);
}

#[test]
fn same_seed_same_delays() {
    let delays = |seed| {
        let mut e = SyncEngine::new(seed);
        (0..5)
            .map(|_| {
                e.start_run(0);
                e.handle(Event::Wake(Trigger::ManualRetry), 0);
                request(&mut e, 0);
                e.handle(Event::Pushed { ops: ids(1), result: Err(http(500, "boom")) }, 0);
                request(&mut e, 0);
                e.finish_run().next_wake_ms
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(delays(9), delays(9));
    assert_ne!(delays(9), delays(10));
}

#[test]
fn network_loss_waits_for_the_link_and_resumes_the_same_step() {
    let mut e = started(1, Trigger::AppForegrounded);
    assert_eq!(request(&mut e, 0), Action::Push { limit: FIRST_PUSH_BATCH });
    e.handle(Event::NothingReady, 0);
    assert_eq!(request(&mut e, 0), Action::NextUpload);
    e.handle(Event::UploadSelected(job("aa", 10, None)), 0);
    assert_eq!(request(&mut e, 0), Action::AnnounceBlob { sha256: "aa".into(), size: 10, preview_of: None });
    e.handle(Event::BlobReply(Err(TransportError::Network("reset".into()))), 5);
    let (records, action) = next(&mut e, 5);
    assert!(records.contains(&Record::Verdicts(vec![(job("aa", 10, None).op_id, Verdict::RetryLater("network"))])));
    assert_eq!(action, Action::Finish);
    let report = e.finish_run();
    assert_eq!((report.next_wake_ms, report.errors.network), (Some(5 + NETWORK_PROBE_MS), 1));
    // Still offline at the next run: wait again.
    e.start_run(0);
    e.handle(Event::NetworkChanged { online: false, metered: false }, 6);
    e.handle(Event::Wake(Trigger::TimerFired), 6);
    assert_eq!(request(&mut e, 6), Action::Finish);
    assert_eq!(e.finish_run().next_wake_ms, Some(6 + NETWORK_PROBE_MS));
    // The link returns: the same step resumes.
    e.start_run(0);
    e.handle(Event::NetworkChanged { online: true, metered: false }, 7);
    assert_eq!(request(&mut e, 7), Action::NextUpload);
    e.finish_run();
    // Offline before a round even starts: wait instead of failing.
    let mut e = SyncEngine::new(1);
    e.start_run(0);
    e.handle(Event::NetworkChanged { online: false, metered: false }, 8);
    e.handle(Event::Wake(Trigger::OperationQueued), 8);
    assert_eq!(request(&mut e, 8), Action::Finish);
    assert_eq!(e.finish_run().next_wake_ms, Some(8 + NETWORK_PROBE_MS));
}

#[test]
fn auth_failure_refreshes_then_pauses_for_a_token_and_resumes() {
    let mut e = started(3, Trigger::ManualRetry);
    request(&mut e, 0);
    e.handle(Event::Pushed { ops: ids(1), result: Err(http(401, "auth_expired")) }, 0);
    assert_eq!(request(&mut e, 0), Action::RefreshToken);
    e.handle(Event::TokenProvided, 0);
    assert_eq!(request(&mut e, 0), Action::Push { limit: FIRST_PUSH_BATCH }, "refreshed: carry on");
    e.handle(Event::Pushed { ops: ids(1), result: Err(http(401, "auth_expired")) }, 1);
    assert_eq!(request(&mut e, 1), Action::RefreshToken);
    e.handle(Event::RefreshFailed(http(401, "auth_revoked")), 1);
    assert_eq!(request(&mut e, 1), Action::NeedLogin);
    assert_eq!(request(&mut e, 1), Action::Finish);
    assert!(e.needs_token());
    let report = e.finish_run();
    assert!(report.needs_login);
    // Triggers do not bypass the pause.
    e.start_run(0);
    e.handle(Event::Wake(Trigger::ManualRetry), 2);
    assert_eq!(request(&mut e, 2), Action::NeedLogin);
    e.finish_run();
    e.start_run(0);
    e.handle(Event::TokenProvided, 3);
    assert_eq!(request(&mut e, 3), Action::Push { limit: FIRST_PUSH_BATCH });
}

#[test]
fn a_revoked_device_ends_the_run_with_revocation_not_a_login_prompt() {
    let mut e = started(3, Trigger::ManualRetry);
    request(&mut e, 0);
    e.handle(Event::Pushed { ops: ids(1), result: Err(http(401, api::DEVICE_REVOKED)) }, 0);
    assert_eq!(request(&mut e, 0), Action::RefreshToken, "a 401 is first a token question");
    e.handle(Event::RefreshFailed(http(401, api::DEVICE_REVOKED)), 0);
    assert_eq!(request(&mut e, 0), Action::DeviceRevoked);
    assert_eq!(request(&mut e, 0), Action::Finish);
    let report = e.finish_run();
    assert!(report.device_revoked);
    assert!(!report.needs_login, "no login helps: the app shows export and wipe instead");
}

#[test]
fn a_refresh_that_cannot_reach_the_server_is_tried_again_soon() {
    let mut e = started(3, Trigger::ManualRetry);
    request(&mut e, 0);
    e.handle(Event::Pushed { ops: ids(1), result: Err(http(401, "auth_expired")) }, 0);
    assert_eq!(request(&mut e, 0), Action::RefreshToken);
    e.handle(Event::RefreshFailed(TransportError::Network("down".into())), 100);
    assert_eq!(request(&mut e, 100), Action::Finish);
    let report = e.finish_run();
    assert_eq!((report.next_wake_ms, report.needs_login, report.errors.network), (Some(100 + REFRESH_RETRY_MS), false, 1));
    e.start_run(0);
    e.handle(Event::Wake(Trigger::TimerFired), 200);
    assert_eq!(request(&mut e, 200), Action::RefreshToken, "still owes a refresh");
}

#[test]
fn metered_policies_choose_what_travels() {
    let mut e = SyncEngine::new(5);
    e.handle(Event::PolicyChanged(MeteredPolicy::TextOnly), 0);
    e.handle(Event::NetworkChanged { online: true, metered: true }, 0);
    e.start_run(0);
    e.handle(Event::Wake(Trigger::NetworkUp), 0);
    e.handle(Event::NothingReady, 0);
    assert_eq!(request(&mut e, 0), Action::Pull { cursor: 0, limit: PULL_PAGE, skip: vec![] }, "no photos on a metered link");
    e.handle(Event::Pulled(Ok(page(0, false, 0))), 0);
    assert_eq!(request(&mut e, 0), Action::CheckRemaining { uploads_allowed: false });
    e.finish_run();
    e.handle(Event::NetworkChanged { online: true, metered: false }, 1);
    assert!(e.uploads_allowed() && e.originals_allowed());
    assert_eq!(e.preview_edge(), None);
    e.handle(Event::PolicyChanged(MeteredPolicy::Thumbnails), 2);
    e.handle(Event::NetworkChanged { online: true, metered: true }, 2);
    assert!(e.uploads_allowed() && !e.originals_allowed());
    assert_eq!(e.preview_edge(), Some(320));
    e.start_run(0);
    e.handle(Event::Wake(Trigger::NetworkUp), 2);
    e.handle(Event::NothingReady, 2);
    assert_eq!(request(&mut e, 2), Action::NextPreview { long_edge: 320 });
    e.finish_run();
    e.handle(Event::PolicyChanged(MeteredPolicy::Renditions), 3);
    assert_eq!(e.preview_edge(), Some(1280));
}

#[test]
fn a_preview_announces_its_original_and_records_what_went_ahead() {
    let mut e = SyncEngine::new(5);
    e.handle(Event::PolicyChanged(MeteredPolicy::Renditions), 0);
    e.handle(Event::NetworkChanged { online: true, metered: true }, 0);
    e.start_run(0);
    e.handle(Event::Wake(Trigger::NetworkUp), 0);
    e.handle(Event::NothingReady, 0);
    assert_eq!(request(&mut e, 0), Action::NextPreview { long_edge: 1280 });
    let preview = job("pp", 100, Some(("orig", 1280)));
    e.handle(Event::UploadSelected(preview.clone()), 0);
    let (records, action) = next(&mut e, 0);
    assert!(records.is_empty(), "a preview does not put the upload operation in flight");
    assert_eq!(action, Action::AnnounceBlob { sha256: "pp".into(), size: 100, preview_of: Some("orig".into()) });
    e.handle(Event::BlobReply(Ok(blob("pp", 100, 100, true))), 0);
    let (records, action) = next(&mut e, 0);
    assert_eq!(records, vec![Record::PreviewSent { original_sha256: "orig".into(), preview_sha256: Some("pp".into()), long_edge: 1280 }]);
    assert_eq!(action, Action::NextPreview { long_edge: 1280 });
    // A refused preview is noted as done, never parks the evidence.
    e.handle(Event::UploadSelected(job("p2", 100, Some(("o2", 1280)))), 0);
    request(&mut e, 0);
    e.handle(Event::BlobReply(Err(http(422, "not_an_image"))), 0);
    let (records, _) = next(&mut e, 0);
    assert_eq!(records, vec![Record::PreviewSent { original_sha256: "o2".into(), preview_sha256: None, long_edge: 1280 }]);
    let report = e.finish_run();
    assert_eq!((report.previews_uploaded, report.parked, report.errors.rejected), (1, 0, 1));
}

/// A blob this device sent some of before: its upload starts by asking the
/// server (announce), as the chunking tests need. See `fresh_job`.
fn job(sha256: &str, size: u64, preview: Option<(&str, u32)>) -> BlobJob {
    // One stable op id per hash, so tests can name the operation.
    let op_id = Uuid::from_u128(sha256.bytes().fold(7u128, |h, b| h.wrapping_mul(31).wrapping_add(b as u128)));
    BlobJob {
        op_id,
        sha256: sha256.into(),
        size,
        path: PathBuf::from(format!("/photos/{sha256}")),
        preview: preview.map(|(original, long_edge)| PreviewOf { original_sha256: original.into(), long_edge }),
        sent_before: true,
    }
}

/// An original never sent before: its first chunk carries the announcement.
fn fresh_job(sha256: &str, size: u64) -> BlobJob {
    BlobJob { sent_before: false, ..job(sha256, size, None) }
}

/// Start an upload of `size` bytes and return the first chunk request.
fn upload_started(size: u64) -> (SyncEngine, BlobJob) {
    let mut e = started(11, Trigger::ManualRetry);
    e.handle(Event::NothingReady, 0);
    assert_eq!(request(&mut e, 0), Action::NextUpload);
    let original = job("ab", size, None);
    e.handle(Event::UploadSelected(original.clone()), 0);
    let (records, action) = next(&mut e, 0);
    assert_eq!(records, vec![Record::UploadStarted { op_id: original.op_id }]);
    assert!(matches!(action, Action::AnnounceBlob { .. }));
    e.handle(Event::BlobReply(Ok(blob("ab", size, 0, false))), 0);
    (e, original)
}

fn chunk_request(e: &mut SyncEngine) -> (u64, usize) {
    match request(e, 0) {
        Action::SendChunk { offset, len, .. } => (offset, len),
        other => panic!("expected a chunk, got {other:?}"),
    }
}

#[test]
fn chunks_start_small_double_to_the_ceiling_and_resume_from_the_server_offset() {
    let size = 10 * MAX_CHUNK_BYTES as u64;
    let (mut e, original) = upload_started(size);
    let mut offset = 0;
    let mut lens = Vec::new();
    for _ in 0..6 {
        let (at, len) = chunk_request(&mut e);
        assert_eq!(at, offset);
        lens.push(len);
        offset += len as u64;
        e.handle(Event::BlobReply(Ok(blob("ab", size, offset, false))), 0);
        let (records, _) = next(&mut e, 0);
        assert_eq!(records.first(), Some(&Record::UploadProgress { sha256: "ab".into(), size, offset }));
    }
    assert_eq!(lens, vec![FIRST_CHUNK_BYTES, 2 * FIRST_CHUNK_BYTES, 4 * FIRST_CHUNK_BYTES, 8 * FIRST_CHUNK_BYTES, MAX_CHUNK_BYTES, MAX_CHUNK_BYTES]);
    // Someone else moved the offset: ask, then go on from the server's word.
    e.handle(Event::BlobReply(Err(http(409, "offset_mismatch"))), 0);
    assert_eq!(request(&mut e, 0), Action::BlobStatus { sha256: "ab".into() });
    e.handle(Event::BlobReply(Ok(blob("ab", size, size - 10, false))), 0);
    assert_eq!(chunk_request(&mut e), (size - 10, 10), "the last chunk is only what is left");
    e.handle(Event::BlobReply(Ok(blob("ab", size, size, true))), 0);
    let (records, action) = next(&mut e, 0);
    assert!(records.contains(&Record::UploadDone { op_id: original.op_id, sha256: "ab".into() }));
    assert_eq!(action, Action::NextUpload);
    let report = e.finish_run();
    assert_eq!(report.photos_uploaded, 1);
    assert_eq!(report.uploaded_bytes, offset + 10);
}

/// A chunk at `now_ms`, answered `took_ms` later with everything it carried.
fn chunk_timed(e: &mut SyncEngine, size: u64, now_ms: i64, took_ms: i64) -> usize {
    let Action::SendChunk { offset, len, .. } = request(e, now_ms) else { panic!("a chunk") };
    e.handle(Event::BlobReply(Ok(blob("ab", size, offset + len as u64, offset + len as u64 == size))), now_ms + took_ms);
    len
}

#[test]
fn chunks_follow_the_measured_link() {
    // A good link: the first 256 KiB take 10 ms (about 26 MB/s), so the rest
    // of a 3 MiB photo goes in one chunk, and the next photo in one too.
    let size = 3 << 20;
    let (mut e, _) = upload_started(size);
    assert_eq!(chunk_timed(&mut e, size, 100, 10), FIRST_CHUNK_BYTES);
    assert_eq!(chunk_timed(&mut e, size, 200, 60), size as usize - FIRST_CHUNK_BYTES, "the rest at once");
    let (_, action) = next(&mut e, 300);
    assert_eq!(action, Action::NextUpload);
    e.handle(Event::UploadSelected(job("ab", size, None)), 300);
    request(&mut e, 300);
    e.handle(Event::BlobReply(Ok(blob("ab", size, 0, false))), 300);
    assert_eq!(chunk_timed(&mut e, size, 400, 100), size as usize, "the rate is known: one chunk");

    // A poor link: 256 KiB take 4 s (64 KiB/s): chunks of about 2 s of
    // sending, so a cut loses little; slower still, never below the floor.
    let size = 8 << 20;
    let (mut e, _) = upload_started(size);
    assert_eq!(chunk_timed(&mut e, size, 1_000, 4_000), FIRST_CHUNK_BYTES);
    assert_eq!(chunk_timed(&mut e, size, 10_000, 16_000), 128 * 1024, "2 s at 64 KiB/s, not the doubling's 512 KiB");
    assert_eq!(chunk_timed(&mut e, size, 30_000, 60_000), 72 * 1024, "smoothed: (64 + 8) / 2 KiB/s for 2 s");
    assert!(chunk_timed(&mut e, size, 100_000, 60_000) > MIN_CHUNK_BYTES);
    assert_eq!(chunk_timed(&mut e, size, 200_000, 60_000), MIN_CHUNK_BYTES, "the floor");
}

#[test]
fn a_chunk_lost_on_the_way_forgets_the_measured_link() {
    // Fast Wi-Fi measured, then a weak uplink: the 4 MiB chunk is lost, and
    // the next attempt starts small again instead of failing the same way.
    let size = 8 << 20;
    let (mut e, _) = upload_started(size);
    assert_eq!(chunk_timed(&mut e, size, 100, 10), FIRST_CHUNK_BYTES);
    let Action::SendChunk { len, .. } = request(&mut e, 200) else { panic!("a chunk") };
    assert_eq!(len, MAX_CHUNK_BYTES, "sized for the fast link");
    e.handle(Event::BlobReply(Err(TransportError::Network("timeout".into()))), 60_200);
    e.handle(Event::NetworkChanged { online: true, metered: false }, 70_000);
    assert_eq!(request(&mut e, 70_000), Action::NextUpload);
    e.handle(Event::UploadSelected(job("ab", size, None)), 70_000);
    request(&mut e, 70_000);
    e.handle(Event::BlobReply(Ok(blob("ab", size, FIRST_CHUNK_BYTES as u64, false))), 70_000);
    assert_eq!(chunk_request(&mut e).1, FIRST_CHUNK_BYTES, "small again until the link is measured anew");
}

#[test]
fn a_proxy_that_refuses_large_bodies_gets_halved_chunks_for_the_rest_of_the_upload() {
    let (mut e, _) = upload_started(8 * 1024 * 1024);
    assert_eq!(chunk_request(&mut e).1, FIRST_CHUNK_BYTES);
    e.handle(Event::BlobReply(Err(http(413, "body_too_large"))), 0);
    assert_eq!(chunk_request(&mut e), (0, FIRST_CHUNK_BYTES / 2));
    e.handle(Event::BlobReply(Ok(blob("ab", 8 << 20, (FIRST_CHUNK_BYTES / 2) as u64, false))), 0);
    assert_eq!(chunk_request(&mut e).1, FIRST_CHUNK_BYTES / 2, "the ceiling stays lowered");
    for _ in 0..2 {
        e.handle(Event::BlobReply(Err(http(413, "body_too_large"))), 0);
    }
    assert_eq!(chunk_request(&mut e).1, MIN_CHUNK_BYTES);
    // At the floor, a refusal is a transient failure: back off, never park.
    e.handle(Event::BlobReply(Err(http(413, "body_too_large"))), 0);
    let (records, action) = next(&mut e, 0);
    assert!(matches!(&records[..], [Record::Verdicts(v)] if v[0].1 == Verdict::RetryLater("transient")));
    assert_eq!(action, Action::Finish);
    assert_eq!(e.finish_run().parked, 0);
}

#[test]
fn damaged_chunks_are_resent_a_few_times_then_back_off_without_parking() {
    let (mut e, original) = upload_started(1 << 20);
    for _ in 0..MAX_DAMAGED_CHUNKS {
        e.handle(Event::BlobReply(Err(http(400, "chunk_checksum_mismatch"))), 0);
        assert_eq!(chunk_request(&mut e).0, 0, "the same chunk again");
    }
    e.handle(Event::BlobReply(Err(http(400, "chunk_checksum_mismatch"))), 0);
    let (records, action) = next(&mut e, 0);
    assert_eq!(records, vec![Record::Verdicts(vec![(original.op_id, Verdict::RetryLater("transient"))])]);
    assert_eq!(action, Action::Finish, "backing off");
    let report = e.finish_run();
    assert_eq!((report.parked, report.errors.transient), (0, 1));
}

#[test]
fn a_blob_that_hashes_wrong_restarts_once_then_parks() {
    let (mut e, original) = upload_started(1000);
    chunk_request(&mut e);
    e.handle(Event::BlobReply(Err(http(422, "blob_hash_mismatch"))), 0);
    assert_eq!(request(&mut e, 0), Action::BlobStatus { sha256: "ab".into() });
    e.handle(Event::BlobReply(Ok(blob("ab", 1000, 0, false))), 0);
    assert_eq!(chunk_request(&mut e), (0, 1000));
    e.handle(Event::BlobReply(Err(http(422, "blob_hash_mismatch"))), 0);
    let (records, _) = next(&mut e, 0);
    assert!(matches!(&records[0], Record::Verdicts(v) if v[0].0 == original.op_id && matches!(&v[0].1, Verdict::Park(r) if r.code == "blob_hash_mismatch")));
    assert_eq!(e.finish_run().parked, 1);
}

#[test]
fn every_byte_arrived_but_unverified_is_asked_again_later() {
    let mut e = started(11, Trigger::ManualRetry);
    e.handle(Event::NothingReady, 0);
    let original = job("ab", 1000, None);
    e.handle(Event::UploadSelected(original.clone()), 0);
    assert!(matches!(request(&mut e, 0), Action::AnnounceBlob { .. }));
    e.handle(Event::BlobReply(Ok(blob("ab", 1000, 1000, false))), 0);
    let (records, action) = next(&mut e, 0);
    assert_eq!(records, vec![Record::Verdicts(vec![(original.op_id, Verdict::RetryLater("transient"))])]);
    assert_eq!(action, Action::Finish);
}

#[test]
fn a_photo_file_that_cannot_be_read_parks_only_that_upload() {
    let (mut e, original) = upload_started(1000);
    chunk_request(&mut e);
    e.handle(Event::UploadFileUnreadable { code: "photo_file_not_found".into() }, 0);
    let (records, action) = next(&mut e, 0);
    assert!(matches!(&records[0], Record::Verdicts(v) if v[0].0 == original.op_id && matches!(&v[0].1, Verdict::Park(r) if r.code == "photo_file_not_found")));
    assert_eq!(action, Action::NextUpload, "the round goes on");
}

#[test]
fn a_request_refused_as_a_whole_is_halved_until_the_culprit_travels_alone() {
    let mut e = started(2, Trigger::ManualRetry);
    let mut limit = FIRST_PUSH_BATCH;
    let mut sizes = Vec::new();
    while limit > 1 {
        assert_eq!(request(&mut e, 0), Action::Push { limit });
        let ops = ids(limit.min(40) as usize);
        sizes.push(ops.len());
        e.handle(Event::Pushed { ops: ops.clone(), result: Err(http(400, "invalid_json")) }, 0);
        let (records, action) = next(&mut e, 0);
        assert_eq!(records, vec![Record::Verdicts(ops.iter().map(|op| (*op, Verdict::RetryLater("batch_refused"))).collect())], "nothing parked yet");
        let Action::Push { limit: halved } = action else { panic!("{action:?}") };
        limit = halved;
    }
    assert_eq!(sizes, vec![40, 20, 10, 5, 2]);
    let culprit = ids(1);
    e.handle(Event::Pushed { ops: culprit.clone(), result: Err(http(400, "invalid_json")) }, 0);
    let (records, action) = next(&mut e, 0);
    assert_eq!(records, vec![Record::Verdicts(vec![(culprit[0], Verdict::Park(ParkReason { code: "invalid_json".into(), message: "m".into() }))])]);
    assert_eq!(action, Action::Push { limit: FIRST_PUSH_BATCH }, "back to full batches");
    assert_eq!(e.finish_run().parked, 1);
}

#[test]
fn push_batches_grow_to_the_protocol_limit_and_halve_when_a_request_fails() {
    let mut e = started(3, Trigger::ManualRetry);
    let mut limits = Vec::new();
    for _ in 0..5 {
        let Action::Push { limit } = request(&mut e, 0) else { panic!("a push") };
        limits.push(limit);
        let ops = ids(limit as usize);
        e.handle(Event::Pushed { ops: ops.clone(), result: Ok(applied(&ops)) }, 0);
    }
    assert_eq!(limits, vec![100, 200, 400, 500, 500], "a long backlog goes in few requests");
    let Action::Push { limit } = request(&mut e, 0) else { panic!("a push") };
    let ops = ids(limit as usize);
    e.handle(Event::Pushed { ops, result: Err(TransportError::Network("reset".into())) }, 0);
    e.handle(Event::NetworkChanged { online: true, metered: false }, 0);
    assert_eq!(request(&mut e, 0), Action::Push { limit: 250 }, "a poor link resends less");
    e.finish_run();
    e.start_run(0);
    e.handle(Event::Wake(Trigger::ManualRetry), 0);
    assert_eq!(request(&mut e, 0), Action::Push { limit: FIRST_PUSH_BATCH }, "each run starts moderate");
}

#[test]
fn per_operation_results_acknowledge_park_or_resend() {
    let mut e = started(2, Trigger::OperationQueued);
    request(&mut e, 0);
    let ops = ids(4);
    let rejected = OperationOutcome::Rejected { code: "category_retired".into(), message: "m".into() };
    let response = PushResponse {
        results: vec![
            OperationResult { op_id: ops[0], outcome: OperationOutcome::Applied { entity_version: 2 } },
            OperationResult { op_id: ops[1], outcome: OperationOutcome::Duplicate { first: Box::new(OperationOutcome::Applied { entity_version: 1 }) } },
            // A replayed rejection is still a rejection.
            OperationResult { op_id: ops[2], outcome: OperationOutcome::Duplicate { first: Box::new(rejected) } },
        ],
        server_time_ms: 99,
        echo: None,
    };
    e.handle(Event::Pushed { ops: ops.clone(), result: Ok(response) }, 0);
    let (records, _) = next(&mut e, 0);
    let reason = ParkReason { code: "category_retired".into(), message: "m".into() };
    assert_eq!(
        records,
        vec![
            Record::Verdicts(vec![
                (ops[0], Verdict::Acknowledge),
                (ops[1], Verdict::Acknowledge),
                (ops[2], Verdict::Park(reason)),
                (ops[3], Verdict::RetryLater("unanswered")),
            ]),
            Record::ServerTime(99),
        ]
    );
    let report = e.finish_run();
    assert_eq!((report.pushed, report.parked, report.errors.rejected), (2, 1, 1));
}

#[test]
fn cancel_stops_at_a_request_boundary_and_hands_the_upload_back() {
    let (mut e, original) = upload_started(1 << 20);
    chunk_request(&mut e);
    e.handle(Event::BlobReply(Ok(blob("ab", 1 << 20, FIRST_CHUNK_BYTES as u64, false))), 0);
    e.handle(Event::Cancel, 50);
    let (records, action) = next(&mut e, 50);
    assert_eq!(records.last(), Some(&Record::Verdicts(vec![(original.op_id, Verdict::RetryLater("budget"))])));
    assert!(records.iter().any(|r| matches!(r, Record::UploadProgress { .. })), "progress made before the cancel is kept");
    assert_eq!(action, Action::Finish);
    let report = e.finish_run();
    assert_eq!((report.next_wake_ms, report.completed), (Some(50), false));
    // The next run resumes the upload step and asks the server where it stands.
    e.start_run(0);
    e.handle(Event::Wake(Trigger::ManualRetry), 60);
    assert_eq!(request(&mut e, 60), Action::NextUpload);
}

#[test]
fn work_that_became_ready_during_a_round_starts_another_only_after_progress() {
    let mut e = started(4, Trigger::OperationQueued);
    let ops = ids(1);
    request(&mut e, 0);
    e.handle(Event::Pushed { ops: ops.clone(), result: Ok(applied(&ops)) }, 0);
    assert_eq!(finish_round_until_check(&mut e), Action::CheckRemaining { uploads_allowed: true });
    e.handle(Event::Remaining { ready: true }, 0);
    assert_eq!(request(&mut e, 0), Action::Push { limit: FIRST_PUSH_BATCH * 2 }, "progress was made: another round");
    assert_eq!(finish_round_until_check(&mut e), Action::CheckRemaining { uploads_allowed: true });
    e.handle(Event::Remaining { ready: true }, 0);
    assert_eq!(request(&mut e, 0), Action::Finish, "no progress: stop and come back soon");
    let report = e.finish_run();
    assert_eq!((report.completed, report.next_wake_ms), (false, Some(BASE_BACKOFF_MS)));
}

fn finish_round_until_check(e: &mut SyncEngine) -> Action {
    loop {
        match request(e, 0) {
            Action::Push { .. } | Action::NextUpload | Action::NextThumbnail { .. } => e.handle(Event::NothingReady, 0),
            Action::Pull { .. } => e.handle(Event::Pulled(Ok(page(0, false, 0))), 0),
            other => return other,
        }
    }
}

#[test]
fn a_whole_round_with_nothing_to_do_completes() {
    let mut e = started(8, Trigger::AppForegrounded);
    assert_eq!(finish_round(&mut e, 0), Action::Finish);
    assert!(e.finish_run().completed);
}

#[test]
fn stale_results_are_ignored() {
    let mut e = started(5, Trigger::ManualRetry);
    e.handle(Event::Pulled(Ok(page(0, false, 0))), 0);
    let (_, action) = next(&mut e, 0);
    assert_eq!(action, Action::Push { limit: FIRST_PUSH_BATCH });
}

#[test]
fn four_classes() {
    let with_retry = |status, code: &str| TransportError::Http { status, code: code.into(), message: "m".into(), retry_after_ms: Some(5) };
    assert_eq!(classify(&TransportError::Network("reset".into())), Disposition::Retry(FailureClass::Network));
    assert_eq!(classify(&with_retry(401, "auth_expired")), Disposition::Retry(FailureClass::Auth));
    for status in [429, 500, 502, 503, 504, 409] {
        assert_eq!(classify(&with_retry(status, "x")), Disposition::Retry(FailureClass::Transient { retry_after_ms: Some(5) }), "{status}");
    }
    assert_eq!(classify(&with_retry(400, "invalid_payload")), Disposition::Reject { code: "invalid_payload".into(), message: "m".into() });
    assert_eq!(classify(&with_retry(404, "not_found")), Disposition::Reject { code: "not_found".into(), message: "m".into() });
    // Something between device and server refused (no Gridwork error body), or a body limit.
    assert_eq!(classify(&with_retry(403, "http_403")), Disposition::Retry(FailureClass::Transient { retry_after_ms: Some(5) }));
    assert_eq!(classify(&with_retry(413, "body_too_large")), Disposition::Retry(FailureClass::Transient { retry_after_ms: Some(5) }));
    assert_eq!(classify(&TransportError::Malformed("truncated".into())), Disposition::Retry(FailureClass::Transient { retry_after_ms: None }));
}

/// After the pull: thumbnails of other devices' photos, one at a time; a
/// refused one is skipped for the run, a network failure waits like any
/// step, and a text-only metered link fetches none.
#[test]
fn thumbnails_follow_the_pull_and_a_refused_one_is_skipped() {
    let mut e = started(11, Trigger::AppForegrounded);
    let to_thumbnails = |e: &mut SyncEngine| loop {
        match request(e, 0) {
            Action::Push { .. } | Action::NextUpload => e.handle(Event::NothingReady, 0),
            Action::Pull { .. } => e.handle(Event::Pulled(Ok(page(0, false, 0))), 0),
            other => return other,
        }
    };
    assert_eq!(to_thumbnails(&mut e), Action::NextThumbnail { skip: vec![] });
    e.handle(Event::ThumbnailWanted { sha256: "a".into() }, 0);
    assert_eq!(request(&mut e, 0), Action::FetchThumbnail { sha256: "a".into() });
    e.handle(Event::Thumbnail { sha256: "a".into(), result: Ok(vec![1, 2, 3]) }, 0);
    let (records, action) = next(&mut e, 0);
    assert_eq!(records, [Record::ThumbnailFetched { sha256: "a".into(), bytes: vec![1, 2, 3] }]);
    assert_eq!(action, Action::NextThumbnail { skip: vec![] });
    e.handle(Event::ThumbnailWanted { sha256: "b".into() }, 0);
    request(&mut e, 0);
    let not_yet = TransportError::Http { status: 404, code: "blob_incomplete".into(), message: "m".into(), retry_after_ms: None };
    e.handle(Event::Thumbnail { sha256: "b".into(), result: Err(not_yet) }, 0);
    assert_eq!(request(&mut e, 0), Action::NextThumbnail { skip: vec!["b".into()] }, "skipped for this run");
    e.handle(Event::ThumbnailWanted { sha256: "c".into() }, 0);
    request(&mut e, 0);
    e.handle(Event::Thumbnail { sha256: "c".into(), result: Err(TransportError::Network("reset".into())) }, 0);
    assert_eq!(request(&mut e, 0), Action::Finish, "the link dropped: wait for it");
    let report = e.finish_run();
    assert_eq!((report.thumbnails_fetched, report.completed, report.next_wake_ms), (1, false, Some(NETWORK_PROBE_MS)));

    // Metered, text only: no thumbnails either.
    let mut e = started(12, Trigger::AppForegrounded);
    e.handle(Event::PolicyChanged(MeteredPolicy::TextOnly), 0);
    e.handle(Event::NetworkChanged { online: true, metered: true }, 0);
    assert_eq!(to_thumbnails(&mut e), Action::CheckRemaining { uploads_allowed: false }, "no thumbnail asked for");
}

#[test]
fn pushed_changes_echoed_by_the_server_are_applied_and_skipped_by_pull() {
    let mut e = SyncEngine::new(7);
    e.start_run(40);
    e.handle(Event::Wake(Trigger::OperationQueued), 0);
    let echo = |after: i64, until: i64| {
        let change = api::Change { cursor: until, entity_kind: "incident".into(), entity_id: Uuid::now_v7().to_string(), body: api::ChangeBody::Remove };
        Some(api::Echo { span: SkipSpan { after, until }, changes: vec![change] })
    };
    // Two pushes whose spans touch, one that stands apart.
    for (after, until) in [(50, 60), (60, 75), (80, 81)] {
        assert!(matches!(request(&mut e, 0), Action::Push { .. }));
        let ops = ids(2);
        let mut response = applied(&ops);
        response.echo = echo(after, until);
        let expected = response.echo.clone().unwrap().changes;
        e.handle(Event::Pushed { ops: ops.clone(), result: Ok(response) }, 0);
        let (records, _) = next(&mut e, 0);
        assert!(matches!(records[0], Record::Verdicts(_)), "verdicts first, so the echoed cases' operations are acknowledged: {records:?}");
        assert_eq!(records[1], Record::ApplyEcho(expected), "then the echoed views, without moving the cursor");
    }
    e.handle(Event::NothingReady, 0);
    assert_eq!(request(&mut e, 0), Action::NextUpload);
    e.handle(Event::NothingReady, 0);
    let spans = vec![SkipSpan { after: 50, until: 75 }, SkipSpan { after: 80, until: 81 }];
    assert_eq!(request(&mut e, 0), Action::Pull { cursor: 40, limit: PULL_PAGE, skip: spans });
    e.handle(Event::Pulled(Ok(page(0, true, 78))), 0);
    assert_eq!(request(&mut e, 0), Action::Pull { cursor: 78, limit: PULL_PAGE, skip: vec![SkipSpan { after: 80, until: 81 }] }, "a span passed is forgotten");

    // A new run knows no spans: what the last one echoed may not be stored.
    e.handle(Event::Cancel, 0);
    while !matches!(e.poll(0), Action::Finish) {}
    e.finish_run();
    e.start_run(78);
    e.handle(Event::Wake(Trigger::ManualRetry), 0);
    assert_eq!(finish_round_pull(&mut e), Action::Pull { cursor: 78, limit: PULL_PAGE, skip: vec![] });
}

/// Answer push and upload with nothing until the run asks to pull.
fn finish_round_pull(e: &mut SyncEngine) -> Action {
    loop {
        match request(e, 0) {
            Action::Push { .. } | Action::NextUpload | Action::NextPreview { .. } => e.handle(Event::NothingReady, 0),
            other => return other,
        }
    }
}

/// A pulled change of an entity from before its echoed change is stale
/// (a removal the push has since outdated): dropped, never applied over
/// the newer echoed view. A later one is applied.
#[test]
fn a_pulled_change_older_than_the_echoed_one_is_dropped() {
    let mut e = SyncEngine::new(7);
    e.start_run(40);
    e.handle(Event::Wake(Trigger::OperationQueued), 0);
    let (stale, fresh, other) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    let change = |cursor: i64, id: &str| api::Change { cursor, entity_kind: "incident".into(), entity_id: id.into(), body: api::ChangeBody::Remove };
    assert!(matches!(request(&mut e, 0), Action::Push { .. }));
    let ops = ids(2);
    let mut response = applied(&ops);
    response.echo = Some(api::Echo { span: SkipSpan { after: 100, until: 102 }, changes: vec![change(101, &stale), change(102, &fresh)] });
    e.handle(Event::Pushed { ops, result: Ok(response) }, 0);
    assert_eq!(finish_round_pull(&mut e), Action::Pull { cursor: 40, limit: PULL_PAGE, skip: vec![SkipSpan { after: 100, until: 102 }] });
    let pulled = PullResponse { changes: vec![change(50, &stale), change(103, &fresh), change(60, &other)], next_cursor: 103, has_more: false, server_time_ms: 0 };
    e.handle(Event::Pulled(Ok(pulled)), 0);
    let (records, _) = next(&mut e, 0);
    let Record::ApplyPage(page) = &records[0] else { panic!("{records:?}") };
    assert_eq!(page.changes, vec![change(103, &fresh), change(60, &other)]);
    assert_eq!(page.next_cursor, 103, "the cursor moves all the same");
}

#[test]
fn a_fresh_original_is_announced_with_its_first_chunk() {
    // A good link measured by the first photo: the next goes in one request.
    let size = 3 << 20;
    let mut e = started(11, Trigger::ManualRetry);
    e.handle(Event::NothingReady, 0);
    e.handle(Event::UploadSelected(fresh_job("f1", size)), 0);
    let Action::SendChunk { offset: 0, len, announce_size: Some(announced), .. } = request(&mut e, 100) else { panic!("an announcing chunk") };
    assert_eq!((len, announced), (FIRST_CHUNK_BYTES, size), "nothing measured yet: a small first chunk");
    e.handle(Event::BlobReply(Ok(blob("f1", size, len as u64, false))), 110);
    let Action::SendChunk { announce_size: None, len, .. } = request(&mut e, 200) else { panic!("a plain chunk") };
    assert_eq!(len, size as usize - FIRST_CHUNK_BYTES);
    e.handle(Event::BlobReply(Ok(blob("f1", size, size, true))), 260);
    assert_eq!(request(&mut e, 300), Action::NextUpload);
    let second = fresh_job("f2", size);
    e.handle(Event::UploadSelected(second.clone()), 300);
    assert_eq!(
        request(&mut e, 300),
        Action::SendChunk { sha256: "f2".into(), path: second.path.clone(), offset: 0, len: size as usize, announce_size: Some(size) },
        "the whole photo and its announcement in one request"
    );
    e.handle(Event::BlobReply(Ok(blob("f2", size, size, true))), 360);
    let (records, _) = next(&mut e, 400);
    assert!(records.contains(&Record::UploadDone { op_id: second.op_id, sha256: "f2".into() }), "{records:?}");

    // The server held part of it already (an attempt not recorded here):
    // nothing of ours counted, go on from its offset without announcing.
    e.handle(Event::UploadSelected(fresh_job("f3", size)), 400);
    assert!(matches!(request(&mut e, 400), Action::SendChunk { announce_size: Some(_), .. }));
    e.handle(Event::BlobReply(Ok(blob("f3", size, 5_000, false))), 410);
    let (_, action) = next(&mut e, 410);
    let Action::SendChunk { offset: 5_000, announce_size: None, .. } = action else { panic!("on from the server's offset: {action:?}") };
    let report = e.finish_run();
    assert_eq!(report.uploaded_bytes, 2 * size, "the bytes the server already held are not counted as sent");

    // A refused announcement fails the upload like a refused announce,
    // and leaves the measured link alone.
    let mut e = started(12, Trigger::ManualRetry);
    e.handle(Event::NothingReady, 0);
    e.handle(Event::UploadSelected(fresh_job("f4", 1000)), 0);
    assert!(matches!(request(&mut e, 0), Action::SendChunk { announce_size: Some(1000), .. }));
    e.handle(Event::BlobReply(Err(http(400, "blob_size_mismatch"))), 0);
    let (records, _) = next(&mut e, 0);
    assert!(matches!(&records[0], Record::Verdicts(v) if matches!(v[0].1, Verdict::Park(_))), "{records:?}");
    // A server from before announcing chunks answers 404 (no such blob):
    // the upload announces apart instead of parking the evidence.
    let mut e = started(15, Trigger::ManualRetry);
    e.handle(Event::NothingReady, 0);
    e.handle(Event::UploadSelected(fresh_job("f5", 1000)), 0);
    assert!(matches!(request(&mut e, 0), Action::SendChunk { announce_size: Some(1000), .. }));
    e.handle(Event::BlobReply(Err(http(404, "not_found"))), 0);
    assert_eq!(request(&mut e, 0), Action::AnnounceBlob { sha256: "f5".into(), size: 1000, preview_of: None });
    // A preview is still announced apart (it names its original).
    let mut e = started(13, Trigger::ManualRetry);
    e.handle(Event::NothingReady, 0);
    e.handle(Event::UploadSelected(BlobJob { sent_before: false, ..job("pv", 100, Some(("orig", 320))) }), 0);
    assert!(matches!(request(&mut e, 0), Action::AnnounceBlob { preview_of: Some(_), .. }));
}

/// Found by fuzzing: an empty original (no photo is one) never became an
/// empty announcing chunk; it is announced, and the server's word decides.
#[test]
fn an_empty_fresh_original_is_announced_not_sent_as_an_empty_chunk() {
    let mut e = started(14, Trigger::ManualRetry);
    e.handle(Event::NothingReady, 0);
    e.handle(Event::UploadSelected(fresh_job("e0", 0)), 0);
    assert_eq!(request(&mut e, 0), Action::AnnounceBlob { sha256: "e0".into(), size: 0, preview_of: None });
}

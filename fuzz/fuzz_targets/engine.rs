//! The sync engine (sans-IO) fed arbitrary replies: whatever a network and a
//! server answer, in whatever order, the engine never panics, only asks for
//! what the protocol allows, decides the fate only of operations the store
//! handed it (never one a reply merely names), and a run ends once the
//! answers stop coming.
#![no_main]

use std::collections::HashSet;
use std::path::PathBuf;

use gridwork_core::sync::engine::{Action, BlobJob, Event, PreviewOf, Record, SyncEngine};
use gridwork_core::sync::{MeteredPolicy, Trigger, TransportError};
use gridwork_protocol::api::{BlobStatus, Echo, MAX_PULL_SKIPS, OperationOutcome, OperationResult, PullResponse, PushResponse, SkipSpan};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

/// The fuzzer's bytes as a stream of choices; zeros once spent.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        first
    }
    fn below(&mut self, n: u8) -> u8 {
        self.byte() % n
    }
    fn number(&mut self) -> u64 {
        u64::from_le_bytes([self.byte(), self.byte(), self.byte(), 0, 0, 0, 0, 0])
    }
    fn spent(&self) -> bool {
        self.0.is_empty()
    }
}

fn failure(c: &mut Choices) -> TransportError {
    match c.below(4) {
        0 => TransportError::Network("reset".into()),
        1 => TransportError::Malformed("cut off".into()),
        2 => TransportError::Http { status: 400 + u16::from(c.below(100)), code: "refused".into(), message: "m".into(), retry_after_ms: None },
        _ => TransportError::Http {
            status: [401, 408, 409, 413, 429, 500, 502, 503][c.below(8) as usize],
            code: ["auth_expired", "http_502", "too_many", "x", "device_revoked"][c.below(5) as usize].into(),
            message: "m".into(),
            retry_after_ms: (c.byte() % 2 == 0).then(|| c.number() as i64),
        },
    }
}

fn blob(c: &mut Choices, sha256: &str) -> Result<BlobStatus, TransportError> {
    if c.below(4) == 0 {
        return Err(failure(c));
    }
    let size = c.number();
    Ok(BlobStatus { sha256: sha256.to_owned(), size, offset: c.number().min(size + c.number() % 3), complete: c.below(3) == 0 })
}

fuzz_target!(|bytes: &[u8]| {
    let mut c = Choices(bytes);
    let mut engine = SyncEngine::new(u64::from(c.byte()));
    engine.start_run(c.number() as i64);
    engine.handle(Event::Wake(Trigger::OperationQueued), 0);
    // Operations the store handed the engine (pushed, or uploads selected).
    let mut handed: HashSet<Uuid> = HashSet::new();
    let mut now = 0i64;
    for _ in 0..10_000 {
        now += i64::from(c.byte());
        // Now and then the world changes between requests.
        match c.below(16) {
            0 => engine.handle(Event::NetworkChanged { online: c.below(4) != 0, metered: c.below(2) == 0 }, now),
            1 => engine.handle(Event::PolicyChanged([MeteredPolicy::TextOnly, MeteredPolicy::Thumbnails, MeteredPolicy::Renditions, MeteredPolicy::Everything][c.below(4) as usize]), now),
            2 => engine.handle(Event::Wake(Trigger::ManualRetry), now),
            3 if c.below(8) == 0 => engine.handle(Event::Cancel, now),
            _ => {}
        }
        let event = match engine.poll(now) {
            Action::Finish => {
                let _ = engine.finish_run();
                return;
            }
            Action::Record(Record::Verdicts(verdicts)) => {
                for (op, _) in &verdicts {
                    assert!(handed.contains(op), "a verdict on an operation the store never handed over");
                }
                continue;
            }
            Action::Record(_) | Action::NeedLogin | Action::DeviceRevoked => continue,
            Action::Push { limit } => {
                assert!((1..=500).contains(&limit), "push limit {limit}");
                let n = c.below(4).min(limit as u8);
                if n == 0 {
                    Event::NothingReady
                } else {
                    let ops: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
                    handed.extend(&ops);
                    let result = if c.below(3) == 0 {
                        Err(failure(&mut c))
                    } else {
                        // Results for some of the ops, and maybe one the device never sent.
                        let mut results = Vec::new();
                        for op in &ops {
                            let outcome = match c.below(4) {
                                0 => continue,
                                1 => OperationOutcome::Applied { entity_version: 1 },
                                2 => OperationOutcome::Duplicate { first: Box::new(OperationOutcome::Applied { entity_version: 1 }) },
                                _ => OperationOutcome::Rejected { code: "invalid_payload".into(), message: "m".into() },
                            };
                            results.push(OperationResult { op_id: *op, outcome });
                        }
                        if c.below(8) == 0 {
                            results.push(OperationResult { op_id: Uuid::now_v7(), outcome: OperationOutcome::Applied { entity_version: 1 } });
                        }
                        // Maybe an echo of a span (after < until, as a server sends it).
                        let echo = (c.below(2) == 0).then(|| {
                            let after = (c.number() % 1_000_000) as i64;
                            Echo { span: SkipSpan { after, until: after + 1 + (c.number() % 1000) as i64 }, changes: Vec::new() }
                        });
                        Ok(PushResponse { results, server_time_ms: now, echo })
                    };
                    Event::Pushed { ops, result }
                }
            }
            Action::NextUpload | Action::NextPreview { .. } => match c.below(4) {
                0 => Event::NothingReady,
                1 => {
                    let op_id = Uuid::now_v7();
                    handed.insert(op_id);
                    Event::UploadUnreadable { op_id }
                }
                _ => Event::UploadSelected(BlobJob {
                    op_id: {
                        let op_id = Uuid::now_v7();
                        handed.insert(op_id);
                        op_id
                    },
                    sha256: format!("{:064x}", c.number()),
                    size: c.number(),
                    path: PathBuf::from("photo.jpg"),
                    preview: (c.below(3) == 0).then(|| PreviewOf { original_sha256: "0".repeat(64), long_edge: 320 }),
                    sent_before: c.below(2) == 0,
                }),
            },
            Action::AnnounceBlob { sha256, .. } | Action::BlobStatus { sha256 } => Event::BlobReply(blob(&mut c, &sha256)),
            Action::SendChunk { sha256, len, offset, announce_size, .. } => {
                assert!(len > 0, "an empty chunk");
                assert!(announce_size.is_none() || offset == 0, "an announcement travels with the first chunk only");
                if c.below(10) == 0 { Event::UploadFileUnreadable { code: "photo_file_not_found".into() } } else { Event::BlobReply(blob(&mut c, &sha256)) }
            }
            Action::Pull { cursor, limit, skip } => {
                assert!(limit >= 1, "pull limit {limit}");
                assert!(skip.len() <= MAX_PULL_SKIPS, "{} spans to skip", skip.len());
                assert!(skip.iter().all(|s| s.after < s.until && s.until > cursor), "a span a server would refuse or one already passed: {skip:?} at {cursor}");
                if c.below(4) == 0 {
                    Event::Pulled(Err(failure(&mut c)))
                } else {
                    Event::Pulled(Ok(PullResponse { changes: Vec::new(), next_cursor: c.number() as i64, has_more: c.below(2) == 0, server_time_ms: now }))
                }
            }
            Action::NextThumbnail { .. } => {
                if c.below(2) == 0 { Event::NothingReady } else { Event::ThumbnailWanted { sha256: format!("{:064x}", c.number()) } }
            }
            Action::FetchThumbnail { sha256 } => {
                let result = if c.below(3) == 0 { Err(failure(&mut c)) } else { Ok(vec![0xff, 0xd8]) };
                Event::Thumbnail { sha256, result }
            }
            Action::RefreshToken => if c.below(2) == 0 { Event::TokenProvided } else { Event::RefreshFailed(failure(&mut c)) },
            Action::CheckRemaining { .. } => Event::Remaining { ready: c.below(2) == 0 },
        };
        engine.handle(event, now);
        // Once the answers stop coming, the run must be let go of.
        if c.spent() {
            engine.handle(Event::Cancel, now);
        }
    }
    panic!("a run that never ends after the replies stopped");
});

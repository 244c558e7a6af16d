//! Property tests of the outbox invariants, against a real SQLCipher file.
//!
//! A random sequence of sync-engine actions (queue, send what is ready,
//! acknowledge, park, retry later, unpark, recover after a restart, let time
//! pass) runs against the database and against a small in-memory model. After
//! every action the database must agree with the model:
//!
//! 1. Order per entity: `ready` never offers an operation while an earlier
//!    one on its entity is unacknowledged, and each entity's operations are
//!    acknowledged exactly in the order they were queued.
//! 2. A parked operation holds back only its own entity: `ready` is exactly
//!    the set the model predicts (oldest first), so every other entity whose
//!    head operation is pending, due and free of dependencies flows on.
//! 3. Nothing is lost: the row count equals what was queued, `summary`
//!    counts match the model, and `recover_in_flight` turns every in-flight
//!    operation back into a pending one.
//!
//! At the end of each case everything parked is unparked and the queue is
//! drained: every operation must end acknowledged, in queue order.

use std::collections::HashSet;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::json;
use tempfile::TempDir;
use uuid::Uuid;

use super::*;
use crate::store::{self, Durability, KEY_LENGTH};

const KEY: [u8; KEY_LENGTH] = [0x5a; KEY_LENGTH];
const ENTITIES: usize = 4;
const START_MS: i64 = 1_700_000_000_000;
/// Device clock is off from server time by this much.
const OFFSET_MS: i64 = -2_500;
/// Large enough that `ready` is never cut short by its limit.
const BIG_LIMIT: u32 = 10_000;

fn open_store(dir: &TempDir) -> store::OpenedStore {
    store::open(dir.path(), "outbox-tests", &KEY, Durability::Normal, 0).expect("open store")
}

fn entity_id(index: usize) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + index as u128)
}

fn at(now_ms: i64) -> Timestamp {
    Timestamp { device_ms: now_ms, corrected_ms: now_ms + OFFSET_MS }
}

fn new_op(entity: Uuid, n: usize, depends_on: Option<Uuid>) -> NewOperation {
    NewOperation {
        entity_id: entity,
        entity_kind: "incident",
        kind: OperationKind::SubmitIncident,
        payload: json!({ "entity": entity.to_string(), "n": n }),
        depends_on,
        blob: None,
    }
}

fn reason(code: &str) -> ParkReason {
    ParkReason { code: code.to_owned(), message: format!("refused: {code}") }
}

fn ids(ops: &[Operation]) -> Vec<Uuid> {
    ops.iter().map(|o| o.op_id).collect()
}

fn count_rows(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).expect("count")
}

// ---------------------------------------------------------------- the model

#[derive(Clone, Debug)]
struct ModelOp {
    op_id: Uuid,
    entity: usize,
    /// Queue number within its entity (0, 1, 2, ...).
    n: usize,
    state: OperationState,
    next_attempt_ms: i64,
    attempts: u32,
    /// Index into `Model::ops` of the operation this one waits for.
    depends_on: Option<usize>,
    created_ms: i64,
    park_code: Option<String>,
}

#[derive(Debug)]
struct Model {
    /// In queue (seq) order.
    ops: Vec<ModelOp>,
    now: i64,
    /// Per entity, op ids in the order they were acknowledged.
    acks: Vec<Vec<Uuid>>,
}

impl Model {
    fn new() -> Self {
        Model { ops: Vec::new(), now: START_MS, acks: vec![Vec::new(); ENTITIES] }
    }

    fn is_ready(&self, index: usize) -> bool {
        let op = &self.ops[index];
        op.state == OperationState::Pending
            && op.next_attempt_ms <= self.now
            && self.ops[..index]
                .iter()
                .filter(|e| e.entity == op.entity)
                .all(|e| e.state == OperationState::Acknowledged)
            && op.depends_on.is_none_or(|d| self.ops[d].state == OperationState::Acknowledged)
    }

    /// What `ready(now, ∞)` must return, oldest first.
    fn ready(&self) -> Vec<Uuid> {
        (0..self.ops.len()).filter(|&i| self.is_ready(i)).map(|i| self.ops[i].op_id).collect()
    }

    /// Indices of operations in one of `states`, in queue order.
    fn in_states(&self, states: &[OperationState]) -> Vec<usize> {
        (0..self.ops.len()).filter(|&i| states.contains(&self.ops[i].state)).collect()
    }

    fn count(&self, state: OperationState) -> u64 {
        self.ops.iter().filter(|o| o.state == state).count() as u64
    }

    fn index_of(&self, op_id: Uuid) -> usize {
        self.ops.iter().position(|o| o.op_id == op_id).expect("op known to the model")
    }

    fn entity_ops(&self, entity: usize) -> Vec<&ModelOp> {
        self.ops.iter().filter(|o| o.entity == entity).collect()
    }
}

// -------------------------------------------------------------- the actions

#[derive(Clone, Debug)]
enum Action {
    /// Queue an operation on entity `entity`, maybe depending on an earlier one.
    Enqueue { entity: usize, depends_on: Option<Index> },
    /// Take the ready list and mark the operations picked by `mask` in flight.
    Send { mask: u8 },
    /// The server applied an in-flight operation.
    Acknowledge(Index),
    /// The server refused an in-flight operation (or, with `pending_too`, a
    /// pending one, e.g. refused by a local check before sending).
    Park { pick: Index, pending_too: bool },
    /// Sending failed; try again `delay_ms` from now (may be in the past).
    RetryLater { pick: Index, delay_ms: i64 },
    /// The user retries a parked operation.
    Unpark(Index),
    /// The app restarted.
    RecoverInFlight,
    /// Time passes.
    Advance(i64),
    /// Call every transition the picked operation's state does not allow.
    Misuse(Index),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => (0..ENTITIES, prop::option::weighted(0.25, any::<Index>()))
            .prop_map(|(entity, depends_on)| Action::Enqueue { entity, depends_on }),
        5 => any::<u8>().prop_map(|mask| Action::Send { mask }),
        5 => any::<Index>().prop_map(Action::Acknowledge),
        3 => (any::<Index>(), any::<bool>()).prop_map(|(pick, pending_too)| Action::Park { pick, pending_too }),
        2 => (any::<Index>(), -3_000i64..6_000).prop_map(|(pick, delay_ms)| Action::RetryLater { pick, delay_ms }),
        2 => any::<Index>().prop_map(Action::Unpark),
        1 => Just(Action::RecoverInFlight),
        2 => (0i64..4_000).prop_map(Action::Advance),
        2 => any::<Index>().prop_map(Action::Misuse),
    ]
}

/// Which transitions each state allows, as `set_state` is called in mod.rs.
fn allowed(call: u8, state: OperationState) -> bool {
    use OperationState::*;
    match call {
        0 => state == Pending,                    // mark_in_flight
        1 => matches!(state, Pending | InFlight), // acknowledge
        2 => matches!(state, Pending | InFlight), // park
        3 => matches!(state, Pending | InFlight), // retry_later
        _ => state == Parked,                     // unpark
    }
}

fn call_transition(conn: &Connection, call: u8, op_id: Uuid, now: i64) -> Result<()> {
    match call {
        0 => mark_in_flight(conn, op_id),
        1 => acknowledge(conn, op_id, now),
        2 => park(conn, op_id, &reason("misuse")),
        3 => retry_later(conn, op_id, now, "network"),
        _ => unpark(conn, op_id, now),
    }
}

// ------------------------------------------------------------------ runner

fn apply(conn: &Connection, model: &mut Model, action: &Action) -> std::result::Result<(), TestCaseError> {
    match action {
        Action::Enqueue { entity, depends_on } => {
            let dep = depends_on.as_ref().filter(|_| !model.ops.is_empty()).map(|i| i.index(model.ops.len()));
            let n = model.entity_ops(*entity).len();
            let op = new_op(entity_id(*entity), n, dep.map(|d| model.ops[d].op_id));
            let op_id = enqueue(conn, &op, at(model.now)).map_err(|e| TestCaseError::fail(format!("enqueue: {e}")))?;
            prop_assert!(model.ops.iter().all(|o| o.op_id != op_id), "op id reused");
            model.ops.push(ModelOp {
                op_id,
                entity: *entity,
                n,
                state: OperationState::Pending,
                next_attempt_ms: model.now,
                attempts: 0,
                depends_on: dep,
                created_ms: model.now,
                park_code: None,
            });
        }
        Action::Send { mask } => {
            // The sync engine sends what the database says is ready.
            let ready_ops = ready(conn, model.now, BIG_LIMIT).map_err(fail)?;
            for (i, op) in ready_ops.iter().enumerate() {
                if mask & (1 << (i % 8)) != 0 {
                    mark_in_flight(conn, op.op_id).map_err(fail)?;
                    let m = model.index_of(op.op_id);
                    prop_assert_eq!(model.ops[m].state, OperationState::Pending, "ready offered a non-pending op");
                    model.ops[m].state = OperationState::InFlight;
                    model.ops[m].attempts += 1;
                }
            }
        }
        Action::Acknowledge(pick) => {
            let candidates = model.in_states(&[OperationState::InFlight]);
            if !candidates.is_empty() {
                let m = candidates[pick.index(candidates.len())];
                acknowledge(conn, model.ops[m].op_id, model.now).map_err(fail)?;
                model.ops[m].state = OperationState::Acknowledged;
                let entity = model.ops[m].entity;
                model.acks[entity].push(model.ops[m].op_id);
            }
        }
        Action::Park { pick, pending_too } => {
            let states: &[OperationState] = if *pending_too {
                &[OperationState::InFlight, OperationState::Pending]
            } else {
                &[OperationState::InFlight]
            };
            let candidates = model.in_states(states);
            if !candidates.is_empty() {
                let m = candidates[pick.index(candidates.len())];
                let code = format!("rejected_{m}");
                park(conn, model.ops[m].op_id, &reason(&code)).map_err(fail)?;
                model.ops[m].state = OperationState::Parked;
                model.ops[m].park_code = Some(code);
            }
        }
        Action::RetryLater { pick, delay_ms } => {
            let candidates = model.in_states(&[OperationState::InFlight, OperationState::Pending]);
            if !candidates.is_empty() {
                let m = candidates[pick.index(candidates.len())];
                let next = model.now + delay_ms;
                retry_later(conn, model.ops[m].op_id, next, "transient").map_err(fail)?;
                model.ops[m].state = OperationState::Pending;
                model.ops[m].next_attempt_ms = next;
            }
        }
        Action::Unpark(pick) => {
            let candidates = model.in_states(&[OperationState::Parked]);
            if !candidates.is_empty() {
                let m = candidates[pick.index(candidates.len())];
                unpark(conn, model.ops[m].op_id, model.now).map_err(fail)?;
                model.ops[m].state = OperationState::Pending;
                model.ops[m].next_attempt_ms = model.now;
                model.ops[m].park_code = None;
            }
        }
        Action::RecoverInFlight => {
            let expected = model.count(OperationState::InFlight);
            let recovered = recover_in_flight(conn).map_err(fail)?;
            prop_assert_eq!(recovered, expected, "recover_in_flight count");
            for op in &mut model.ops {
                if op.state == OperationState::InFlight {
                    op.state = OperationState::Pending;
                }
            }
            prop_assert_eq!(summary(conn, model.now).map_err(fail)?.in_flight, 0, "in flight after recovery");
        }
        Action::Advance(ms) => model.now += ms,
        Action::Misuse(pick) => {
            if model.ops.is_empty() {
                for call in 0..5 {
                    let result = call_transition(conn, call, Uuid::now_v7(), model.now);
                    prop_assert!(
                        matches!(result, Err(Error::NotFound { .. })),
                        "call {} on an unknown op: {:?}",
                        call,
                        result
                    );
                }
            } else {
                let m = pick.index(model.ops.len());
                let state = model.ops[m].state;
                for call in (0..5).filter(|&c| !allowed(c, state)) {
                    match call_transition(conn, call, model.ops[m].op_id, model.now) {
                        Err(Error::InvalidState { state: found, .. }) => prop_assert_eq!(found, state.as_str()),
                        other => prop_assert!(false, "call {} on a {:?} op gave {:?}", call, state, other),
                    }
                }
            }
        }
    }
    Ok(())
}

fn fail(e: Error) -> TestCaseError {
    TestCaseError::fail(format!("outbox call failed: {e}"))
}

/// Everything the database says must agree with the model.
fn check(conn: &Connection, model: &Model) -> std::result::Result<(), TestCaseError> {
    // 3. Nothing lost.
    prop_assert_eq!(count_rows(conn), model.ops.len() as i64, "rows in outbox");
    let s = summary(conn, model.now).map_err(fail)?;
    prop_assert_eq!(s.pending, model.count(OperationState::Pending), "summary.pending");
    prop_assert_eq!(s.in_flight, model.count(OperationState::InFlight), "summary.in_flight");
    prop_assert_eq!(s.parked, model.count(OperationState::Parked), "summary.parked");
    prop_assert_eq!(s.acknowledged, model.count(OperationState::Acknowledged), "summary.acknowledged");
    let oldest = model.ops.iter().filter(|o| o.state != OperationState::Acknowledged).map(|o| o.created_ms).min();
    prop_assert_eq!(s.oldest_unsent_created_ms, oldest, "summary.oldest_unsent_created_ms");
    prop_assert_eq!(s.oldest_unsent_age_ms, oldest.map(|t| model.now - t), "summary.oldest_unsent_age_ms");

    // Every row, entity by entity, in queue order.
    for entity in 0..ENTITIES {
        let rows = for_entity(conn, entity_id(entity)).map_err(fail)?;
        let expected = model.entity_ops(entity);
        prop_assert_eq!(rows.len(), expected.len(), "ops on entity {}", entity);
        prop_assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq), "for_entity not in seq order");
        for (row, op) in rows.iter().zip(&expected) {
            prop_assert_eq!(row.op_id, op.op_id, "entity {} queue order", entity);
            prop_assert_eq!(row.state, op.state, "state of {}#{}", entity, op.n);
            prop_assert_eq!(row.attempts, op.attempts, "attempts of {}#{}", entity, op.n);
            prop_assert_eq!(row.next_attempt_ms, op.next_attempt_ms, "next_attempt_ms of {}#{}", entity, op.n);
            prop_assert_eq!(row.depends_on, op.depends_on.map(|d| model.ops[d].op_id), "depends_on");
            prop_assert_eq!(row.park_reason.as_ref().map(|r| r.code.clone()), op.park_code.clone(), "park reason");
            prop_assert_eq!(row.created_at, at(op.created_ms), "created_at");
            prop_assert_eq!(row.kind, Some(OperationKind::SubmitIncident));
            prop_assert_eq!(&row.payload, &json!({ "entity": entity_id(entity).to_string(), "n": op.n }));
        }
    }

    // 2. ready is exactly what the model predicts, oldest first.
    let ready_ops = ready(conn, model.now, BIG_LIMIT).map_err(fail)?;
    let got = ids(&ready_ops);
    let want = model.ready();
    prop_assert_eq!(&got, &want, "ready(now) at {}", model.now);
    prop_assert!(ready_ops.windows(2).all(|w| w[0].seq < w[1].seq), "ready not oldest first");
    // A small limit gives the oldest ones.
    let first_two = ids(&ready(conn, model.now, 2).map_err(fail)?);
    prop_assert_eq!(&first_two[..], &want[..want.len().min(2)], "ready with limit 2");

    // 2, stated directly: each entity whose head is sendable is offered,
    // whatever is parked elsewhere.
    let offered: HashSet<Uuid> = got.iter().copied().collect();
    for entity in 0..ENTITIES {
        let head = model.ops.iter().position(|o| o.entity == entity && o.state != OperationState::Acknowledged);
        if let Some(h) = head {
            let op = &model.ops[h];
            let sendable = op.state == OperationState::Pending
                && op.next_attempt_ms <= model.now
                && op.depends_on.is_none_or(|d| model.ops[d].state == OperationState::Acknowledged);
            prop_assert_eq!(
                offered.contains(&op.op_id),
                sendable,
                "head of entity {} ({:?}); parked elsewhere: {}",
                entity,
                op.state,
                model.count(OperationState::Parked)
            );
        }
    }

    // 1. Checked from the database alone: nothing offered while an earlier op
    // on its entity, or the op it depends on, is unacknowledged.
    for op in &ready_ops {
        let same_entity = for_entity(conn, op.entity_id).map_err(fail)?;
        for earlier in same_entity.iter().filter(|e| e.seq < op.seq) {
            prop_assert_eq!(
                earlier.state,
                OperationState::Acknowledged,
                "ready op {} overtakes seq {}",
                op.seq,
                earlier.seq
            );
        }
        if let Some(dep) = op.depends_on {
            let dep = get(conn, dep).map_err(fail)?;
            prop_assert_eq!(dep.map(|d| d.state), Some(OperationState::Acknowledged), "dependency of {}", op.seq);
        }
        prop_assert_eq!(op.state, OperationState::Pending);
        prop_assert!(op.next_attempt_ms <= model.now, "ready op not due");
    }

    // 1. Acknowledgements per entity are a prefix of its queue order.
    for entity in 0..ENTITIES {
        let queued: Vec<Uuid> = model.entity_ops(entity).iter().map(|o| o.op_id).collect();
        let acked = &model.acks[entity];
        prop_assert!(acked.len() <= queued.len());
        prop_assert_eq!(&acked[..], &queued[..acked.len()], "ack order of entity {}", entity);
    }
    Ok(())
}

/// Unpark everything, restart, and send until nothing is left: every
/// operation must end acknowledged, each entity in queue order.
fn drain(conn: &Connection, model: &mut Model) -> std::result::Result<(), TestCaseError> {
    let recovered = recover_in_flight(conn).map_err(fail)?;
    prop_assert_eq!(recovered, model.count(OperationState::InFlight));
    for op in &mut model.ops {
        if op.state == OperationState::InFlight {
            op.state = OperationState::Pending;
        }
    }
    model.now += 10_000;
    for m in model.in_states(&[OperationState::Parked]) {
        unpark(conn, model.ops[m].op_id, model.now).map_err(fail)?;
        model.ops[m].state = OperationState::Pending;
        model.ops[m].next_attempt_ms = model.now;
        model.ops[m].park_code = None;
    }
    check(conn, model)?;
    // Each round acknowledges at least the oldest unacknowledged op (its
    // entity predecessors and its dependency are older, so acknowledged).
    for _round in 0..=model.ops.len() {
        let batch = ready(conn, model.now, BIG_LIMIT).map_err(fail)?;
        if batch.is_empty() {
            break;
        }
        for op in &batch {
            mark_in_flight(conn, op.op_id).map_err(fail)?;
            acknowledge(conn, op.op_id, model.now).map_err(fail)?;
            let m = model.index_of(op.op_id);
            model.ops[m].state = OperationState::Acknowledged;
            model.ops[m].attempts += 1;
            let entity = model.ops[m].entity;
            model.acks[entity].push(op.op_id);
        }
        check(conn, model)?;
    }
    prop_assert_eq!(model.count(OperationState::Acknowledged), model.ops.len() as u64, "queue did not drain");
    let s = summary(conn, model.now).map_err(fail)?;
    prop_assert_eq!(s.acknowledged, model.ops.len() as u64);
    prop_assert_eq!(s.oldest_unsent_created_ms, None);
    for entity in 0..ENTITIES {
        let queued: Vec<Uuid> = model.entity_ops(entity).iter().map(|o| o.op_id).collect();
        prop_assert_eq!(&model.acks[entity], &queued, "final ack order of entity {}", entity);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        // Keep failures in the test output, not in files beside the source.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn outbox_matches_model(actions in prop::collection::vec(action(), 1..=40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let opened = open_store(&dir);
        let conn = &opened.connection;
        let mut model = Model::new();
        check(conn, &model)?;
        for action in &actions {
            apply(conn, &mut model, action)?;
            check(conn, &model)?;
        }
        drain(conn, &mut model)?;
    }
}

// ---------------------------------------------------------- example tests

#[test]
fn parked_op_blocks_only_its_entity() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open_store(&dir);
    let conn = &opened.connection;
    let (x, y) = (entity_id(0), entity_id(1));
    let now = START_MS;

    let x1 = enqueue(conn, &new_op(x, 0, None), at(now)).unwrap();
    let x2 = enqueue(conn, &new_op(x, 1, None), at(now)).unwrap();
    let y1 = enqueue(conn, &new_op(y, 0, None), at(now)).unwrap();
    assert_eq!(ids(&ready(conn, now, 100).unwrap()), vec![x1, y1], "one head per entity");

    // The server refuses X's first op.
    mark_in_flight(conn, x1).unwrap();
    park(conn, x1, &reason("category_retired")).unwrap();
    let parked = get(conn, x1).unwrap().unwrap();
    assert_eq!(parked.state, OperationState::Parked);
    assert_eq!(parked.park_reason, Some(reason("category_retired")));
    assert_eq!(parked.attempts, 1);

    // Y still flows; X's second op waits behind the parked one.
    assert_eq!(ids(&ready(conn, now, 100).unwrap()), vec![y1]);
    mark_in_flight(conn, y1).unwrap();
    acknowledge(conn, y1, now).unwrap();
    let y2 = enqueue(conn, &new_op(y, 1, None), at(now + 1)).unwrap();
    assert_eq!(ids(&ready(conn, now + 1, 100).unwrap()), vec![y2]);

    let s = summary(conn, now + 1).unwrap();
    assert_eq!((s.pending, s.in_flight, s.parked, s.acknowledged), (2, 0, 1, 1));
    assert_eq!(s.oldest_unsent_created_ms, Some(now));
    assert_eq!(s.oldest_unsent_age_ms, Some(1));

    // The user retries: X goes on, in order.
    unpark(conn, x1, now + 2).unwrap();
    assert_eq!(get(conn, x1).unwrap().unwrap().park_reason, None);
    assert_eq!(ids(&ready(conn, now + 2, 100).unwrap()), vec![x1, y2]);
    mark_in_flight(conn, x1).unwrap();
    acknowledge(conn, x1, now + 2).unwrap();
    assert_eq!(ids(&ready(conn, now + 2, 100).unwrap()), vec![x2, y2]);
    assert_eq!(get(conn, x1).unwrap().unwrap().attempts, 2);
}

#[test]
fn parked_pending_op_does_not_block_earlier_ops_or_other_entities() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open_store(&dir);
    let conn = &opened.connection;
    let (x, y) = (entity_id(0), entity_id(1));
    let now = START_MS;

    let x1 = enqueue(conn, &new_op(x, 0, None), at(now)).unwrap();
    let x2 = enqueue(conn, &new_op(x, 1, None), at(now)).unwrap();
    let x3 = enqueue(conn, &new_op(x, 2, None), at(now)).unwrap();
    let y1 = enqueue(conn, &new_op(y, 0, None), at(now)).unwrap();
    park(conn, x2, &reason("invalid")).unwrap();

    assert_eq!(ids(&ready(conn, now, 100).unwrap()), vec![x1, y1]);
    acknowledge(conn, x1, now).unwrap();
    // x2 is parked now at the head of X: x3 waits, y1 does not.
    assert_eq!(ids(&ready(conn, now, 100).unwrap()), vec![y1]);
    unpark(conn, x2, now).unwrap();
    assert_eq!(ids(&ready(conn, now, 100).unwrap()), vec![x2, y1]);
    acknowledge(conn, x2, now).unwrap();
    assert_eq!(ids(&ready(conn, now, 100).unwrap()), vec![x3, y1]);
}

#[test]
fn dependency_waits_for_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open_store(&dir);
    let conn = &opened.connection;
    let (x, y) = (entity_id(0), entity_id(1));
    let now = START_MS;

    let a = enqueue(conn, &new_op(x, 0, None), at(now)).unwrap();
    let b = enqueue(conn, &new_op(y, 0, Some(a)), at(now)).unwrap();
    assert_eq!(get(conn, b).unwrap().unwrap().depends_on, Some(a));
    assert_eq!(ids(&ready(conn, now, 100).unwrap()), vec![a], "B waits for A");

    mark_in_flight(conn, a).unwrap();
    assert!(ready(conn, now, 100).unwrap().is_empty(), "in flight is not acknowledged");

    park(conn, a, &reason("rejected")).unwrap();
    assert!(ready(conn, now, 100).unwrap().is_empty(), "parked is not acknowledged");

    unpark(conn, a, now).unwrap();
    retry_later(conn, a, now + 1_000, "network").unwrap();
    assert!(ready(conn, now, 100).unwrap().is_empty(), "A not due yet, B still waits");
    assert_eq!(ids(&ready(conn, now + 1_000, 100).unwrap()), vec![a]);

    mark_in_flight(conn, a).unwrap();
    acknowledge(conn, a, now + 1_000).unwrap();
    assert_eq!(ids(&ready(conn, now + 1_000, 100).unwrap()), vec![b]);
}

#[test]
fn in_flight_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let now = START_MS;
    let (a, b) = {
        let opened = open_store(&dir);
        let conn = &opened.connection;
        let a = enqueue(conn, &new_op(entity_id(0), 0, None), at(now)).unwrap();
        let b = enqueue(conn, &new_op(entity_id(1), 0, None), at(now)).unwrap();
        mark_in_flight(conn, a).unwrap();
        mark_in_flight(conn, b).unwrap();
        acknowledge(conn, b, now).unwrap();
        (a, b)
        // The process dies here, with `a` in flight.
    };
    let opened = open_store(&dir);
    let conn = &opened.connection;
    assert_eq!(count_rows(conn), 2);
    assert_eq!(get(conn, a).unwrap().unwrap().state, OperationState::InFlight);
    assert_eq!(get(conn, b).unwrap().unwrap().state, OperationState::Acknowledged);
    assert!(ready(conn, now, 100).unwrap().is_empty());

    assert_eq!(recover_in_flight(conn).unwrap(), 1);
    let a_row = get(conn, a).unwrap().unwrap();
    assert_eq!(a_row.state, OperationState::Pending);
    assert_eq!(a_row.attempts, 1, "attempts are kept");
    assert_eq!(ids(&ready(conn, now, 100).unwrap()), vec![a]);
    assert_eq!(recover_in_flight(conn).unwrap(), 0);
}

/// Picking a batch walks the pending operations in queue order and stops at
/// its limit: no sort of the whole backlog (which made a long offline
/// backlog quadratic to push), with or without a kind filter.
#[test]
fn a_batch_is_read_in_queue_order_without_sorting_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let opened = open_store(&dir);
    for kinds in [None, Some(&super::transfers::PUSHED_KINDS[..])] {
        let plan: Vec<String> = opened
            .connection
            .prepare(&format!("EXPLAIN QUERY PLAN {}", ready_sql(kinds)))
            .unwrap()
            .query_map(params![0, 100], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(plan.iter().any(|step| step.contains("USING INDEX outbox_state (state=?)")), "{plan:?}");
        assert!(plan.iter().all(|step| !step.contains("TEMP B-TREE")), "{plan:?}");
    }
}

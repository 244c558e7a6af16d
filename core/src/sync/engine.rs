//! The sync engine as a sans-IO state machine.
//!
//! It is fed events (something was queued, the network came up, a request
//! finished or failed, a timer fired, the app got a new token) and answers
//! with the next thing to do. It never touches the network, the database or
//! the clock itself, so tests drive it deterministically and a simulation
//! can run thousands of devices from one seed.
//!
//! A round is: push every ready operation (text first), upload the photos
//! the network policy allows, pull until the server has no more. Failures
//! fall in four classes, each with its own answer:
//!
//! | class | answer |
//! | --- | --- |
//! | network | wait for the link (and probe again after a while) |
//! | transient (429, 5xx) | back off exponentially with jitter, honour Retry-After |
//! | auth | refresh the token once; if that fails, pause and ask the app |
//! | rejected | not here: the operation is parked and the round goes on |

/// Why the engine was woken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    OperationQueued,
    NetworkUp,
    AppForegrounded,
    TimerFired,
    ManualRetry,
}

/// One step of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Push,
    Upload,
    Pull,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureClass {
    /// No connection, connection dropped, timeout.
    Network,
    /// 429 or 5xx; `retry_after_ms` from the server if it said.
    Transient { retry_after_ms: Option<i64> },
    /// 401: the access token is expired, revoked or unknown.
    Auth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Wake(Trigger),
    NetworkChanged { online: bool, metered: bool },
    /// The app (or a refresh) supplied a usable access token.
    TokenProvided,
    /// A step's request succeeded. `more`: the step has further work now.
    Succeeded { step: Step, more: bool },
    Failed { step: Step, class: FailureClass },
    /// Refreshing the token failed with an auth error: a person must log in.
    RefreshFailed,
}

/// What the driver should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Run(Step),
    RefreshToken,
    /// Tell the app a new login is needed; nothing is dropped meanwhile.
    NeedToken,
    /// Nothing to do before this time (or before an event).
    SleepUntil(i64),
    /// Waiting for the network; probe again at this time.
    WaitForNetwork { probe_at_ms: i64 },
    /// The round finished with nothing left to do.
    Idle,
}

/// What may travel on a metered link. Originals that do not travel wait
/// for an unmetered one; a preview lets the command center see the scene
/// meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MeteredPolicy {
    /// Operations only.
    TextOnly,
    /// Operations and a 320 px thumbnail of each photo.
    Thumbnails,
    /// Operations and a 1280 px rendition of each photo.
    Renditions,
    /// Operations and original photos (the default: evidence matters more
    /// than data plans).
    #[default]
    Everything,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Running(Step),
    BackingOff { until_ms: i64, resume: Step },
    WaitingForNetwork { resume: Step },
    Refreshing { resume: Step },
    NeedsToken { resume: Step },
}

pub const BASE_BACKOFF_MS: i64 = 1_000;
pub const MAX_BACKOFF_MS: i64 = 5 * 60 * 1_000;
pub const NETWORK_PROBE_MS: i64 = 60 * 1_000;

#[derive(Clone, Debug)]
pub struct SyncEngine {
    state: State,
    online: bool,
    metered: bool,
    pub metered_policy: MeteredPolicy,
    /// Consecutive transient failures, for the backoff exponent.
    failures: u32,
    /// xorshift state for jitter; seeded so runs replay.
    jitter_state: u64,
    /// Operations per push request: halved when a request is refused as a
    /// whole (to isolate the culprit, or fit a proxy's body limit), grown
    /// back on success.
    pub push_batch: u32,
}

impl SyncEngine {
    pub fn new(jitter_seed: u64) -> SyncEngine {
        SyncEngine {
            state: State::Idle,
            online: true,
            metered: false,
            metered_policy: MeteredPolicy::default(),
            failures: 0,
            jitter_state: jitter_seed | 1,
            push_batch: super::runner::PUSH_BATCH,
        }
    }

    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Whether any photo bytes (originals or previews) may travel now.
    pub fn uploads_allowed(&self) -> bool {
        !self.metered || self.metered_policy != MeteredPolicy::TextOnly
    }

    /// Whether original photos may travel now.
    pub fn originals_allowed(&self) -> bool {
        !self.metered || self.metered_policy == MeteredPolicy::Everything
    }

    /// The long edge of the previews to send ahead now, if any.
    pub fn preview_edge(&self) -> Option<u32> {
        match (self.metered, self.metered_policy) {
            (true, MeteredPolicy::Thumbnails) => Some(320),
            (true, MeteredPolicy::Renditions) => Some(1280),
            _ => None,
        }
    }

    pub fn needs_token(&self) -> bool {
        matches!(self.state, State::NeedsToken { .. })
    }

    fn next_jitter(&mut self, bound: i64) -> i64 {
        // xorshift64*: enough for jitter, and deterministic per seed.
        let mut x = self.jitter_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.jitter_state = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1) as u64) as i64
    }

    /// Exponential backoff with full jitter: a random delay up to
    /// base·2^failures, capped, so a crowd of phones does not return at once.
    fn backoff_ms(&mut self) -> i64 {
        let ceiling = (BASE_BACKOFF_MS << self.failures.min(20)).min(MAX_BACKOFF_MS);
        BASE_BACKOFF_MS / 2 + self.next_jitter(ceiling)
    }

    pub fn handle(&mut self, event: Event, now_ms: i64) {
        self.state = match (self.state, event) {
            (_, Event::NetworkChanged { online, metered }) => {
                self.online = online;
                self.metered = metered;
                match self.state {
                    State::WaitingForNetwork { resume } if online => State::Running(resume),
                    State::Running(step) if !online => State::WaitingForNetwork { resume: step },
                    other => other,
                }
            }
            // Any trigger starts a round, or cuts a wait short, except a
            // pause for a token: only a token ends that.
            (State::NeedsToken { resume }, Event::Wake(_)) => State::NeedsToken { resume },
            (State::Refreshing { resume }, Event::Wake(_)) => State::Refreshing { resume },
            (State::Idle, Event::Wake(_)) => State::Running(Step::Push),
            (State::BackingOff { resume, .. }, Event::Wake(Trigger::ManualRetry | Trigger::TimerFired | Trigger::NetworkUp)) => {
                State::Running(resume)
            }
            (State::BackingOff { until_ms, resume }, Event::Wake(_)) => State::BackingOff { until_ms, resume },
            (State::WaitingForNetwork { resume }, Event::Wake(_)) => State::Running(resume),
            (State::Running(step), Event::Wake(Trigger::OperationQueued)) => State::Running(step.min_with(Step::Push)),
            (running @ State::Running(_), Event::Wake(_)) => running,
            (State::Refreshing { resume } | State::NeedsToken { resume }, Event::TokenProvided) => State::Running(resume),
            (_, Event::TokenProvided) => self.state,
            (State::Refreshing { resume }, Event::RefreshFailed) => State::NeedsToken { resume },
            (state, Event::RefreshFailed) => state,
            (State::Running(step), Event::Succeeded { step: done, more }) if step == done => {
                self.failures = 0;
                if more {
                    State::Running(step)
                } else {
                    match step {
                        Step::Push => State::Running(Step::Upload),
                        Step::Upload => State::Running(Step::Pull),
                        Step::Pull => State::Idle,
                    }
                }
            }
            (State::Running(step), Event::Failed { step: failed, class }) if step == failed => match class {
                FailureClass::Network => State::WaitingForNetwork { resume: step },
                FailureClass::Transient { retry_after_ms } => {
                    self.failures += 1;
                    let delay = self.backoff_ms().max(retry_after_ms.unwrap_or(0).min(MAX_BACKOFF_MS * 2));
                    State::BackingOff { until_ms: now_ms + delay, resume: step }
                }
                FailureClass::Auth => State::Refreshing { resume: step },
            },
            // A result for a step that is no longer running (stale): ignore.
            (state, Event::Succeeded { .. } | Event::Failed { .. }) => state,
        };
    }

    /// The next action. Call after every event; `SleepUntil` and
    /// `WaitForNetwork` end the driver's loop until the time or an event.
    pub fn next_action(&mut self, now_ms: i64) -> Action {
        match self.state {
            State::Idle => Action::Idle,
            State::Running(_) if !self.online => {
                let State::Running(step) = self.state else { unreachable!() };
                self.state = State::WaitingForNetwork { resume: step };
                Action::WaitForNetwork { probe_at_ms: now_ms + NETWORK_PROBE_MS }
            }
            State::Running(Step::Upload) if !self.uploads_allowed() => {
                // Photos wait for Wi-Fi; the round goes on with the pull.
                self.state = State::Running(Step::Pull);
                Action::Run(Step::Pull)
            }
            State::Running(step) => Action::Run(step),
            State::BackingOff { until_ms, resume } => {
                if now_ms >= until_ms {
                    self.state = State::Running(resume);
                    self.next_action(now_ms)
                } else {
                    Action::SleepUntil(until_ms)
                }
            }
            State::WaitingForNetwork { .. } => Action::WaitForNetwork { probe_at_ms: now_ms + NETWORK_PROBE_MS },
            State::Refreshing { .. } => Action::RefreshToken,
            State::NeedsToken { .. } => Action::NeedToken,
        }
    }
}

impl Step {
    /// The earlier of two steps in a round.
    fn min_with(self, other: Step) -> Step {
        let rank = |s: Step| match s {
            Step::Push => 0,
            Step::Upload => 1,
            Step::Pull => 2,
        };
        if rank(other) < rank(self) { other } else { self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(engine: &mut SyncEngine, now: i64) -> Action {
        engine.next_action(now)
    }

    #[test]
    fn a_round_is_push_upload_pull_then_idle() {
        let mut e = SyncEngine::new(7);
        assert_eq!(run(&mut e, 0), Action::Idle);
        e.handle(Event::Wake(Trigger::OperationQueued), 0);
        assert_eq!(run(&mut e, 0), Action::Run(Step::Push));
        e.handle(Event::Succeeded { step: Step::Push, more: true }, 0);
        assert_eq!(run(&mut e, 0), Action::Run(Step::Push), "more ready operations");
        e.handle(Event::Succeeded { step: Step::Push, more: false }, 0);
        assert_eq!(run(&mut e, 0), Action::Run(Step::Upload));
        e.handle(Event::Succeeded { step: Step::Upload, more: false }, 0);
        assert_eq!(run(&mut e, 0), Action::Run(Step::Pull));
        e.handle(Event::Succeeded { step: Step::Pull, more: false }, 0);
        assert_eq!(run(&mut e, 0), Action::Idle);
    }

    #[test]
    fn transient_failures_back_off_with_growing_jittered_delays_and_honour_retry_after() {
        let mut e = SyncEngine::new(42);
        e.handle(Event::Wake(Trigger::ManualRetry), 0);
        let mut delays = Vec::new();
        for _ in 0..8 {
            assert_eq!(run(&mut e, 0), Action::Run(Step::Push));
            e.handle(Event::Failed { step: Step::Push, class: FailureClass::Transient { retry_after_ms: None } }, 0);
            let Action::SleepUntil(until) = run(&mut e, 0) else { panic!("expected a backoff") };
            delays.push(until);
            e.handle(Event::Wake(Trigger::TimerFired), until);
        }
        assert!(delays.iter().all(|d| *d >= BASE_BACKOFF_MS / 2 && *d <= MAX_BACKOFF_MS + BASE_BACKOFF_MS));
        assert!(delays[6] + delays[7] > delays[0] + delays[1], "grows: {delays:?}");
        // Retry-After wins when longer.
        e.handle(Event::Failed { step: Step::Push, class: FailureClass::Transient { retry_after_ms: Some(3_600_000) } }, 10);
        assert_eq!(run(&mut e, 10), Action::SleepUntil(10 + MAX_BACKOFF_MS * 2));
        // A queued operation does not cut a backoff short; a manual retry does.
        e.handle(Event::Wake(Trigger::OperationQueued), 20);
        assert!(matches!(run(&mut e, 20), Action::SleepUntil(_)));
        e.handle(Event::Wake(Trigger::ManualRetry), 20);
        assert_eq!(run(&mut e, 20), Action::Run(Step::Push));
        // Success resets the exponent.
        e.handle(Event::Succeeded { step: Step::Push, more: false }, 20);
        assert_eq!(e.failures, 0);
    }

    #[test]
    fn same_seed_same_delays() {
        let delays = |seed| {
            let mut e = SyncEngine::new(seed);
            (0..5)
                .map(|_| {
                    e.handle(Event::Wake(Trigger::ManualRetry), 0);
                    e.handle(Event::Failed { step: Step::Push, class: FailureClass::Transient { retry_after_ms: None } }, 0);
                    e.next_action(0)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(delays(9), delays(9));
        assert_ne!(delays(9), delays(10));
    }

    #[test]
    fn network_loss_waits_for_the_link_and_resumes_the_same_step() {
        let mut e = SyncEngine::new(1);
        e.handle(Event::Wake(Trigger::AppForegrounded), 0);
        e.handle(Event::Succeeded { step: Step::Push, more: false }, 0);
        e.handle(Event::Failed { step: Step::Upload, class: FailureClass::Network }, 5);
        assert_eq!(run(&mut e, 5), Action::WaitForNetwork { probe_at_ms: 5 + NETWORK_PROBE_MS });
        e.handle(Event::NetworkChanged { online: false, metered: false }, 6);
        assert!(matches!(run(&mut e, 6), Action::WaitForNetwork { .. }));
        e.handle(Event::NetworkChanged { online: true, metered: false }, 7);
        assert_eq!(run(&mut e, 7), Action::Run(Step::Upload));
        // Offline before a round even starts: wait instead of failing.
        e.handle(Event::NetworkChanged { online: false, metered: false }, 8);
        assert!(matches!(run(&mut e, 8), Action::WaitForNetwork { .. }));
    }

    #[test]
    fn auth_failure_refreshes_then_pauses_for_a_token_and_resumes() {
        let mut e = SyncEngine::new(3);
        e.handle(Event::Wake(Trigger::ManualRetry), 0);
        e.handle(Event::Failed { step: Step::Push, class: FailureClass::Auth }, 0);
        assert_eq!(run(&mut e, 0), Action::RefreshToken);
        e.handle(Event::TokenProvided, 0);
        assert_eq!(run(&mut e, 0), Action::Run(Step::Push), "refreshed: carry on");
        e.handle(Event::Failed { step: Step::Push, class: FailureClass::Auth }, 1);
        e.handle(Event::RefreshFailed, 1);
        assert_eq!(run(&mut e, 1), Action::NeedToken);
        assert!(e.needs_token());
        // Triggers do not bypass the pause.
        e.handle(Event::Wake(Trigger::ManualRetry), 2);
        assert_eq!(run(&mut e, 2), Action::NeedToken);
        e.handle(Event::TokenProvided, 3);
        assert_eq!(run(&mut e, 3), Action::Run(Step::Push));
    }

    #[test]
    fn metered_text_only_skips_uploads_but_still_pulls() {
        let mut e = SyncEngine::new(5);
        e.metered_policy = MeteredPolicy::TextOnly;
        e.handle(Event::NetworkChanged { online: true, metered: true }, 0);
        e.handle(Event::Wake(Trigger::NetworkUp), 0);
        e.handle(Event::Succeeded { step: Step::Push, more: false }, 0);
        assert_eq!(run(&mut e, 0), Action::Run(Step::Pull));
        e.handle(Event::NetworkChanged { online: true, metered: false }, 1);
        assert!(e.uploads_allowed() && e.originals_allowed());
        assert_eq!(e.preview_edge(), None);
        e.metered_policy = MeteredPolicy::Thumbnails;
        e.handle(Event::NetworkChanged { online: true, metered: true }, 2);
        assert!(e.uploads_allowed() && !e.originals_allowed());
        assert_eq!(e.preview_edge(), Some(320));
        e.metered_policy = MeteredPolicy::Renditions;
        assert_eq!(e.preview_edge(), Some(1280));
    }

    #[test]
    fn stale_results_are_ignored() {
        let mut e = SyncEngine::new(5);
        e.handle(Event::Wake(Trigger::ManualRetry), 0);
        e.handle(Event::Succeeded { step: Step::Pull, more: false }, 0);
        assert_eq!(run(&mut e, 0), Action::Run(Step::Push));
    }
}

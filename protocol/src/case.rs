//! The case (案卷) workflow: its states, its actions, and the one pure
//! function that decides every step. The server enforces it; devices run
//! the same function offline, so a step the server would refuse is refused
//! on the spot and an accepted one shows its new state before any sync.
//!
//! ```text
//! reported ──────────┬─> registered ─> dispatched ─> signed ─> in_progress ─> handled ─> closed
//! pending_review ────┤      ^  ^          │   ^         │          │   ^          │          │
//!  (volunteer   ^ │  ├─> rejected         │   └─────────┴──────────┘   │ reopened <┴──────────┘
//!   reports)    │ v  └─> merged           │     (hand_back: to registered)  (返工, back to the handler)
//!       info_requested (ask_info; the reporter answers)
//! ```

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoStaticStr};

use crate::role::Role;
use crate::names::Named;

/// Where a case is in the closed loop of GB/T 30428. The names are stable:
/// they are stored by server and devices and sent on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumString, EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum CaseState {
    /// A grid worker's or supervisor's report, or any report once received.
    Reported,
    /// A volunteer's report, waiting for a supervisor's review.
    PendingReview,
    Registered,
    Rejected,
    Merged,
    Dispatched,
    InProgress,
    Handled,
    Closed,
    Reopened,
    /// The assignee (often a department, 职能部门) signed for the task (签收).
    Signed,
    /// A reviewer asked the reporter for more information (待补充).
    InfoRequested,
}

impl Named for CaseState {}

impl CaseState {
    /// From dispatch on, a case is a task (待办): for its assignee, and for
    /// the grid's workers who verify it once handled.
    pub fn is_task(self) -> bool {
        matches!(self, CaseState::Dispatched | CaseState::Signed | CaseState::InProgress | CaseState::Handled | CaseState::Reopened)
    }

    /// The assignee still has work to do on it.
    pub fn awaits_handler(self) -> bool {
        matches!(self, CaseState::Dispatched | CaseState::Signed | CaseState::InProgress | CaseState::Reopened)
    }

    /// A volunteer's report under review (核实).
    pub fn in_review(self) -> bool {
        matches!(self, CaseState::PendingReview | CaseState::InfoRequested)
    }
}

/// A workflow step on a case. The wire carries it as text in
/// [`crate::operation::TransitionRequest`], so a server can answer a name it does
/// not know with `unknown_action` instead of a generic parse error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumString, EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum CaseAction {
    Register,
    Reject,
    Merge,
    Dispatch,
    Start,
    Handle,
    /// Verification passed (核查通过): closed, with a satisfaction rating.
    Close,
    /// Verification failed (返工), or a closed case reopened: back to the handler.
    Reopen,
    /// The assignee signs for the task (签收认领).
    Sign,
    /// The assignee hands the task back to the command center (退回), with a reason.
    HandBack,
    /// A reviewer asks the reporter for more information, with the question.
    AskInfo,
    /// The reporter answers a question, with text and photos.
    Answer,
    /// The handler adds a note to a task in work (处置记录); the state stays.
    Note,
}

impl Named for CaseAction {}

/// What a photo shows about its case: the report's evidence, the
/// handler's result (处置后), or the verifier's on-site check (核查).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumString, EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PhotoRole {
    Evidence,
    After,
    Verification,
}

impl Named for PhotoRole {}

/// A satisfaction rating (评价), in stars.
pub const RATING_STARS: std::ops::RangeInclusive<u8> = 1..=5;

/// What a step must or may carry besides its action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepRule {
    /// A reason or result in words: rejections, results, hand-backs, rework.
    pub note_required: bool,
    /// Only a close carries a rating.
    pub rating_allowed: bool,
    /// The role of photos the step may carry; `None`: it carries none.
    pub photos: Option<PhotoRole>,
}

impl CaseAction {
    pub fn rule(self) -> StepRule {
        let photos = match self {
            CaseAction::Answer => Some(PhotoRole::Evidence),
            CaseAction::Handle => Some(PhotoRole::After),
            CaseAction::Close | CaseAction::Reopen => Some(PhotoRole::Verification),
            _ => None,
        };
        StepRule {
            note_required: matches!(
                self,
                CaseAction::Reject
                    | CaseAction::Handle
                    | CaseAction::HandBack
                    | CaseAction::AskInfo
                    | CaseAction::Answer
                    | CaseAction::Note
                    | CaseAction::Reopen
            ),
            rating_allowed: self == CaseAction::Close,
            photos,
        }
    }

    /// Why a step's extras do not fit its action (a stable code and a
    /// message), if they do not.
    pub fn check_extras(self, has_note: bool, rating: Option<u8>, photo_count: usize) -> Result<(), (&'static str, String)> {
        let rule = self.rule();
        if rule.note_required && !has_note {
            return Err(("note_required", format!("{} needs a note", self.as_str())));
        }
        match rating {
            Some(_) if !rule.rating_allowed => return Err(("invalid_payload", format!("{} carries no rating", self.as_str()))),
            Some(stars) if !RATING_STARS.contains(&stars) => return Err(("invalid_rating", "a rating is 1 to 5 stars".to_owned())),
            _ => {}
        }
        if photo_count > 0 && rule.photos.is_none() {
            return Err(("invalid_payload", format!("{} carries no photos", self.as_str())));
        }
        Ok(())
    }
}

/// The state a new report starts in: volunteers' reports wait for a
/// supervisor's review; everyone else's are reported directly.
pub fn initial_state(reporter: Role) -> CaseState {
    if reporter == Role::Volunteer { CaseState::PendingReview } else { CaseState::Reported }
}

/// Who may report a problem as already resolved on the spot (现场解决): the
/// grid's staff, whose work is then verified like any handled case.
/// Volunteers' reports are reviewed first; departments handle dispatched work.
pub fn may_resolve_on_spot(reporter: Role) -> bool {
    matches!(reporter, Role::GridWorker | Role::Supervisor | Role::Dispatcher | Role::Admin)
}

/// What the caller is to this case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relation {
    pub role: Role,
    /// The case lies in one of the caller's grids.
    pub in_grid: bool,
    /// The case is dispatched to the caller.
    pub is_assignee: bool,
    /// The caller reported the case.
    pub is_reporter: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The action does not apply in this state.
    InvalidTransition,
    /// The caller may not take this action on this case.
    Forbidden,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::InvalidTransition => "invalid_transition",
            Refusal::Forbidden => "forbidden",
        }
    }

    pub fn message(self, action: CaseAction, state: CaseState) -> String {
        match self {
            Refusal::InvalidTransition => format!("cannot {} a case that is {}", action.as_str(), state.as_str()),
            Refusal::Forbidden => format!("your role may not {} this case", action.as_str()),
        }
    }
}

/// The next state of a case after `action` by `who`, or why not.
pub fn next_state(state: CaseState, action: CaseAction, who: Relation) -> Result<CaseState, Refusal> {
    use CaseState::*;
    let target = match (action, state) {
        (CaseAction::Register, Reported | PendingReview | InfoRequested) => Registered,
        (CaseAction::Reject, Reported | PendingReview | InfoRequested) => Rejected,
        (CaseAction::Merge, Reported | PendingReview | InfoRequested | Registered) => Merged,
        (CaseAction::AskInfo, PendingReview) => InfoRequested,
        (CaseAction::Answer, InfoRequested) => PendingReview,
        (CaseAction::Note, Dispatched | Signed | InProgress | Reopened) => state,
        (CaseAction::Dispatch, Registered | Reopened) => Dispatched,
        (CaseAction::Sign, Dispatched | Reopened) => Signed,
        (CaseAction::Start, Dispatched | Signed | Reopened) => InProgress,
        (CaseAction::Handle, Dispatched | Signed | InProgress) => Handled,
        (CaseAction::HandBack, Dispatched | Signed | InProgress | Reopened) => Registered,
        (CaseAction::Close, Handled) => Closed,
        (CaseAction::Reopen, Handled | Closed) => Reopened,
        _ => return Err(Refusal::InvalidTransition),
    };
    let command_center = matches!(who.role, Role::Dispatcher | Role::Admin);
    let grid_supervisor = who.role == Role::Supervisor && who.in_grid;
    // 核查 is done on site by the grid's worker or supervisor, never by the
    // one who did the work.
    let grid_verifier = matches!(who.role, Role::GridWorker | Role::Supervisor) && who.in_grid && !who.is_assignee;
    // 核实 of a volunteer's report: a worker of its grid goes and looks.
    let grid_reviewer = who.role == Role::GridWorker && who.in_grid && state.in_review();
    let allowed = match action {
        // 研判/立案 and review of volunteer reports: the command center, the
        // supervisor of the case's grid, or (volunteer reports) its workers.
        CaseAction::Register | CaseAction::Reject | CaseAction::Merge | CaseAction::AskInfo => {
            command_center || grid_supervisor || grid_reviewer
        }
        // Only the reporter answers a question about their report.
        CaseAction::Answer => who.is_reporter,
        // 派遣 is the command center's alone.
        CaseAction::Dispatch => command_center,
        // 签收, 处置, 反馈 and 退回: the one it was dispatched to.
        CaseAction::Sign | CaseAction::Start | CaseAction::Handle | CaseAction::HandBack | CaseAction::Note => who.is_assignee || command_center,
        // 核查结案 and 返工: the command center, the grid's supervisor, or
        // (for a handled case) a worker of the grid who did not handle it.
        CaseAction::Close => command_center || grid_verifier,
        // Reopening a closed case is the command center's or the grid supervisor's call.
        CaseAction::Reopen => command_center || (grid_verifier && (state == Handled || who.role == Role::Supervisor)),
    };
    if allowed { Ok(target) } else { Err(Refusal::Forbidden) }
}

/// How a task stands against its deadline (时限), as a traffic light.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumString, EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DeadlineLight {
    /// More than a quarter of the time is left.
    Green,
    /// In the last quarter of the time.
    Yellow,
    /// Past the deadline.
    Red,
}

impl Named for DeadlineLight {}

/// The light of a task given since when it runs and its deadline, at `now`
/// (all server time, in ms). A deadline at or before the start is red once
/// passed and yellow until then.
pub fn deadline_light(since_ms: i64, deadline_ms: i64, now_ms: i64) -> DeadlineLight {
    if now_ms >= deadline_ms {
        return DeadlineLight::Red;
    }
    let total = deadline_ms.saturating_sub(since_ms);
    let left = deadline_ms - now_ms;
    if total <= 0 || left.saturating_mul(4) <= total { DeadlineLight::Yellow } else { DeadlineLight::Green }
}

/// The step a time limit (时限) is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumString, EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TimedStep {
    /// 签收: the assignee signs for a dispatched case.
    Sign,
    /// 处置: the assignee handles it.
    Handle,
    /// 核查: a verifier checks the handled case on site.
    Verify,
}

impl Named for TimedStep {}

/// The time limit a case in `state` runs against, and its step: signing
/// while dispatched and verifying while handled when the category sets a
/// limit for that step (`step_deadline_ms`), else handling (`deadline_ms`)
/// while the handler has work to do.
pub fn current_limit(state: CaseState, deadline_ms: Option<i64>, step_deadline_ms: Option<i64>) -> Option<(TimedStep, i64)> {
    match (step_besides_handling(state), step_deadline_ms) {
        (Some(step), Some(due)) => Some((step, due)),
        _ if state.awaits_handler() => deadline_ms.map(|due| (TimedStep::Handle, due)),
        _ => None,
    }
}

/// The step a case's limit besides handling (`step_deadline_ms`) is for in
/// `state`: signing for a dispatched case, verifying a handled one.
pub fn step_besides_handling(state: CaseState) -> Option<TimedStep> {
    match state {
        CaseState::Dispatched => Some(TimedStep::Sign),
        CaseState::Handled => Some(TimedStep::Verify),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{IntoEnumIterator, assert_names_match_serde};

    const DISPATCHER: Relation = Relation { role: Role::Dispatcher, in_grid: false, is_assignee: false, is_reporter: false };

    fn who(role: Role, in_grid: bool, is_assignee: bool) -> Relation {
        Relation { role, in_grid, is_assignee, is_reporter: false }
    }

    #[test]
    fn names_are_stable() {
        assert_names_match_serde::<CaseState>();
        assert_names_match_serde::<CaseAction>();
        assert_names_match_serde::<PhotoRole>();
        assert_names_match_serde::<DeadlineLight>();
        assert_names_match_serde::<TimedStep>();
        let states: Vec<&str> = CaseState::iter().map(CaseState::as_str).collect();
        assert_eq!(
            states,
            [
                "reported",
                "pending_review",
                "registered",
                "rejected",
                "merged",
                "dispatched",
                "in_progress",
                "handled",
                "closed",
                "reopened",
                "signed",
                "info_requested"
            ]
        );
        let actions: Vec<&str> = CaseAction::iter().map(CaseAction::as_str).collect();
        assert_eq!(
            actions,
            ["register", "reject", "merge", "dispatch", "start", "handle", "close", "reopen", "sign", "hand_back", "ask_info", "answer", "note"]
        );
    }

    #[test]
    fn the_whole_closed_loop_with_a_department_and_rework() {
        let department = who(Role::Department, false, true);
        let verifier = who(Role::GridWorker, true, false);
        let mut state = initial_state(Role::Volunteer);
        for (action, who, expected) in [
            (CaseAction::Register, DISPATCHER, CaseState::Registered),
            (CaseAction::Dispatch, DISPATCHER, CaseState::Dispatched),
            (CaseAction::Sign, department, CaseState::Signed),
            (CaseAction::Start, department, CaseState::InProgress),
            (CaseAction::Handle, department, CaseState::Handled),
            (CaseAction::Reopen, verifier, CaseState::Reopened),
            (CaseAction::Sign, department, CaseState::Signed),
            (CaseAction::Handle, department, CaseState::Handled),
            (CaseAction::Close, verifier, CaseState::Closed),
        ] {
            state = next_state(state, action, who).unwrap();
            assert_eq!(state, expected);
        }
    }

    #[test]
    fn every_state_action_pair_is_decided() {
        use CaseAction as A;
        use CaseState as S;
        // Exactly the listed pairs are transitions; everything else refuses.
        let valid: &[(CaseState, CaseAction)] = &[
            (S::Reported, A::Register),
            (S::PendingReview, A::Register),
            (S::Reported, A::Reject),
            (S::PendingReview, A::Reject),
            (S::Reported, A::Merge),
            (S::PendingReview, A::Merge),
            (S::Registered, A::Merge),
            (S::Registered, A::Dispatch),
            (S::Reopened, A::Dispatch),
            (S::Dispatched, A::Sign),
            (S::Reopened, A::Sign),
            (S::Dispatched, A::Start),
            (S::Signed, A::Start),
            (S::Reopened, A::Start),
            (S::Dispatched, A::Handle),
            (S::Signed, A::Handle),
            (S::InProgress, A::Handle),
            (S::Dispatched, A::HandBack),
            (S::Signed, A::HandBack),
            (S::InProgress, A::HandBack),
            (S::Reopened, A::HandBack),
            (S::Handled, A::Close),
            (S::Handled, A::Reopen),
            (S::Closed, A::Reopen),
            (S::PendingReview, A::AskInfo),
            (S::InfoRequested, A::Answer),
            (S::InfoRequested, A::Register),
            (S::InfoRequested, A::Reject),
            (S::InfoRequested, A::Merge),
            (S::Dispatched, A::Note),
            (S::Signed, A::Note),
            (S::InProgress, A::Note),
            (S::Reopened, A::Note),
        ];
        let admin = Relation { role: Role::Admin, in_grid: true, is_assignee: true, is_reporter: true };
        for state in CaseState::iter() {
            for action in CaseAction::iter() {
                let result = next_state(state, action, admin);
                assert_eq!(result.is_ok(), valid.contains(&(state, action)), "{state:?} {action:?}");
            }
        }
    }

    #[test]
    fn roles_are_enforced() {
        let volunteer = who(Role::Volunteer, true, false);
        let supervisor_here = who(Role::Supervisor, true, false);
        let supervisor_elsewhere = who(Role::Supervisor, false, false);
        let worker_not_assigned = who(Role::GridWorker, true, false);
        let worker_assigned = who(Role::GridWorker, true, true);
        let worker_elsewhere = who(Role::GridWorker, false, false);
        let department_not_assigned = who(Role::Department, false, false);
        assert_eq!(next_state(CaseState::PendingReview, CaseAction::Register, volunteer), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::PendingReview, CaseAction::Register, supervisor_here), Ok(CaseState::Registered));
        assert_eq!(next_state(CaseState::PendingReview, CaseAction::Reject, supervisor_elsewhere), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::Registered, CaseAction::Dispatch, supervisor_here), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::Dispatched, CaseAction::Start, worker_not_assigned), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::Dispatched, CaseAction::Sign, department_not_assigned), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::Handled, CaseAction::Close, supervisor_here), Ok(CaseState::Closed));
        // The handler does not verify their own work; a worker of another grid does not either.
        assert_eq!(next_state(CaseState::Handled, CaseAction::Close, worker_assigned), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::Handled, CaseAction::Close, worker_elsewhere), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::Handled, CaseAction::Reopen, worker_not_assigned), Ok(CaseState::Reopened));
        // Reopening a closed case is the command center's or supervisor's call.
        assert_eq!(next_state(CaseState::Closed, CaseAction::Reopen, worker_not_assigned), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::Closed, CaseAction::Reopen, supervisor_here), Ok(CaseState::Reopened));
        // A supervisor who handled it (resolved on the spot) does not verify it either.
        let supervisor_handler = Relation { role: Role::Supervisor, in_grid: true, is_assignee: true, is_reporter: true };
        assert_eq!(next_state(CaseState::Handled, CaseAction::Close, supervisor_handler), Err(Refusal::Forbidden));
        assert_eq!(initial_state(Role::Volunteer), CaseState::PendingReview);
        // 核实: a worker of the grid reviews volunteers' reports, not others'.
        assert_eq!(next_state(CaseState::PendingReview, CaseAction::Register, worker_not_assigned), Ok(CaseState::Registered));
        assert_eq!(next_state(CaseState::PendingReview, CaseAction::AskInfo, worker_not_assigned), Ok(CaseState::InfoRequested));
        assert_eq!(next_state(CaseState::Reported, CaseAction::Register, worker_not_assigned), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::PendingReview, CaseAction::Reject, worker_elsewhere), Err(Refusal::Forbidden));
        // Only the reporter answers.
        let reporter = Relation { role: Role::Volunteer, in_grid: true, is_assignee: false, is_reporter: true };
        assert_eq!(next_state(CaseState::InfoRequested, CaseAction::Answer, reporter), Ok(CaseState::PendingReview));
        assert_eq!(next_state(CaseState::InfoRequested, CaseAction::Answer, supervisor_here), Err(Refusal::Forbidden));
    }

    #[test]
    fn extras_fit_their_action() {
        assert!(CaseAction::Close.check_extras(false, Some(2), 1).is_ok());
        assert_eq!(CaseAction::Close.check_extras(false, Some(6), 0).unwrap_err().0, "invalid_rating");
        assert_eq!(CaseAction::Close.check_extras(false, Some(0), 0).unwrap_err().0, "invalid_rating");
        assert_eq!(CaseAction::Start.check_extras(false, Some(3), 0).unwrap_err().0, "invalid_payload");
        assert_eq!(CaseAction::Start.check_extras(false, None, 1).unwrap_err().0, "invalid_payload");
        assert_eq!(CaseAction::HandBack.check_extras(false, None, 0).unwrap_err().0, "note_required");
        assert_eq!(CaseAction::Handle.rule().photos, Some(PhotoRole::After));
        assert_eq!(CaseAction::Reopen.rule().photos, Some(PhotoRole::Verification));
    }

    #[test]
    fn the_limit_of_the_current_step() {
        use CaseState::*;
        // A sign limit applies while dispatched, the handling one after.
        assert_eq!(current_limit(Dispatched, Some(100), Some(10)), Some((TimedStep::Sign, 10)));
        assert_eq!(current_limit(Dispatched, Some(100), None), Some((TimedStep::Handle, 100)));
        assert_eq!(current_limit(Signed, Some(100), Some(10)), Some((TimedStep::Handle, 100)));
        assert_eq!(current_limit(Reopened, Some(100), None), Some((TimedStep::Handle, 100)));
        // Handled: only a verify limit; the handling one no longer applies.
        assert_eq!(current_limit(Handled, Some(100), Some(200)), Some((TimedStep::Verify, 200)));
        assert_eq!(current_limit(Handled, Some(100), None), None);
        assert_eq!(current_limit(Closed, Some(100), Some(200)), None);
        assert_eq!(current_limit(PendingReview, None, None), None);
    }

    #[test]
    fn deadline_lights() {
        // Dispatched at 0 with 100 to go: green until the last quarter.
        assert_eq!(deadline_light(0, 100, 0), DeadlineLight::Green);
        assert_eq!(deadline_light(0, 100, 74), DeadlineLight::Green);
        assert_eq!(deadline_light(0, 100, 75), DeadlineLight::Yellow);
        assert_eq!(deadline_light(0, 100, 99), DeadlineLight::Yellow);
        assert_eq!(deadline_light(0, 100, 100), DeadlineLight::Red);
        assert_eq!(deadline_light(50, 10, 5), DeadlineLight::Yellow);
        assert_eq!(deadline_light(50, 10, 60), DeadlineLight::Red);
    }
}

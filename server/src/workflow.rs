//! The case workflow of digital city management (GB/T 30428), as a pure
//! function: given a case's state, the caller and an action, the next state
//! or a refusal. No I/O here, so every transition is testable in a table.
//!
//! ```text
//! reported ──────────┬─> registered ─> dispatched ─> in_progress ─> handled ─> closed
//! pending_review ────┤        ^             ^             ^            │          │
//!  (volunteer        ├─> rejected           └── reopened ─┴────────────┴──────────┘
//!   reports)         └─> merged                  (返工)
//! ```

use gridwork_protocol::api::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Reported,
    PendingReview,
    Registered,
    Rejected,
    Merged,
    Dispatched,
    InProgress,
    Handled,
    Closed,
    Reopened,
}

impl State {
    pub const ALL: [State; 10] = [
        State::Reported,
        State::PendingReview,
        State::Registered,
        State::Rejected,
        State::Merged,
        State::Dispatched,
        State::InProgress,
        State::Handled,
        State::Closed,
        State::Reopened,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            State::Reported => "reported",
            State::PendingReview => "pending_review",
            State::Registered => "registered",
            State::Rejected => "rejected",
            State::Merged => "merged",
            State::Dispatched => "dispatched",
            State::InProgress => "in_progress",
            State::Handled => "handled",
            State::Closed => "closed",
            State::Reopened => "reopened",
        }
    }
    pub fn parse(text: &str) -> Option<State> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
    /// From dispatch on, a case is a task (待办) for the grid's workers.
    pub fn is_task(self) -> bool {
        matches!(self, State::Dispatched | State::InProgress | State::Handled | State::Reopened)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Register,
    Reject,
    Merge,
    Dispatch,
    Start,
    Handle,
    Close,
    Reopen,
}

impl Action {
    pub const ALL: [Action; 8] =
        [Action::Register, Action::Reject, Action::Merge, Action::Dispatch, Action::Start, Action::Handle, Action::Close, Action::Reopen];
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::Reject => "reject",
            Action::Merge => "merge",
            Action::Dispatch => "dispatch",
            Action::Start => "start",
            Action::Handle => "handle",
            Action::Close => "close",
            Action::Reopen => "reopen",
        }
    }
    pub fn parse(text: &str) -> Option<Action> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// The state a new report starts in: volunteers' reports wait for a
/// supervisor's review; everyone else's are reported directly.
pub fn initial_state(reporter: Role) -> State {
    if reporter == Role::Volunteer { State::PendingReview } else { State::Reported }
}

/// What the caller is to this case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relation {
    pub role: Role,
    /// The case lies in one of the caller's grids.
    pub in_grid: bool,
    /// The case is dispatched to the caller.
    pub is_assignee: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The action does not apply in this state.
    InvalidTransition,
    /// The caller may not take this action on this case.
    Forbidden,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::InvalidTransition => "invalid_transition",
            Refusal::Forbidden => "forbidden",
        }
    }
}

pub fn next_state(state: State, action: Action, who: Relation) -> Result<State, Refusal> {
    use State::*;
    let target = match (action, state) {
        (Action::Register, Reported | PendingReview) => Registered,
        (Action::Reject, Reported | PendingReview) => Rejected,
        (Action::Merge, Reported | PendingReview | Registered) => Merged,
        (Action::Dispatch, Registered | Reopened) => Dispatched,
        (Action::Start, Dispatched | Reopened) => InProgress,
        (Action::Handle, Dispatched | InProgress) => Handled,
        (Action::Close, Handled) => Closed,
        (Action::Reopen, Handled | Closed) => Reopened,
        _ => return Err(Refusal::InvalidTransition),
    };
    let command_center = matches!(who.role, Role::Dispatcher | Role::Admin);
    let grid_supervisor = who.role == Role::Supervisor && who.in_grid;
    let allowed = match action {
        // 研判/立案 and review of volunteer reports: the command center, or
        // the supervisor of the case's grid.
        Action::Register | Action::Reject | Action::Merge => command_center || grid_supervisor,
        // 派遣 is the command center's alone.
        Action::Dispatch => command_center,
        // 处置 and 反馈: the worker it was dispatched to.
        Action::Start | Action::Handle => who.is_assignee || command_center,
        // 核查结案 and 返工: the command center or the grid's supervisor.
        Action::Close | Action::Reopen => command_center || grid_supervisor,
    };
    if allowed { Ok(target) } else { Err(Refusal::Forbidden) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISPATCHER: Relation = Relation { role: Role::Dispatcher, in_grid: false, is_assignee: false };

    #[test]
    fn the_whole_closed_loop() {
        let worker = Relation { role: Role::GridWorker, in_grid: true, is_assignee: true };
        let mut state = initial_state(Role::GridWorker);
        for (action, who, expected) in [
            (Action::Register, DISPATCHER, State::Registered),
            (Action::Dispatch, DISPATCHER, State::Dispatched),
            (Action::Start, worker, State::InProgress),
            (Action::Handle, worker, State::Handled),
            (Action::Reopen, DISPATCHER, State::Reopened),
            (Action::Start, worker, State::InProgress),
            (Action::Handle, worker, State::Handled),
            (Action::Close, DISPATCHER, State::Closed),
        ] {
            state = next_state(state, action, who).unwrap();
            assert_eq!(state, expected);
        }
    }

    #[test]
    fn every_state_action_pair_is_decided() {
        // Exactly the listed pairs are transitions; everything else refuses.
        let valid: &[(State, Action)] = &[
            (State::Reported, Action::Register),
            (State::PendingReview, Action::Register),
            (State::Reported, Action::Reject),
            (State::PendingReview, Action::Reject),
            (State::Reported, Action::Merge),
            (State::PendingReview, Action::Merge),
            (State::Registered, Action::Merge),
            (State::Registered, Action::Dispatch),
            (State::Reopened, Action::Dispatch),
            (State::Dispatched, Action::Start),
            (State::Reopened, Action::Start),
            (State::Dispatched, Action::Handle),
            (State::InProgress, Action::Handle),
            (State::Handled, Action::Close),
            (State::Handled, Action::Reopen),
            (State::Closed, Action::Reopen),
        ];
        let admin = Relation { role: Role::Admin, in_grid: true, is_assignee: true };
        for state in State::ALL {
            for action in Action::ALL {
                let result = next_state(state, action, admin);
                assert_eq!(result.is_ok(), valid.contains(&(state, action)), "{state:?} {action:?}");
            }
        }
    }

    #[test]
    fn roles_are_enforced() {
        let volunteer = Relation { role: Role::Volunteer, in_grid: true, is_assignee: false };
        let supervisor_here = Relation { role: Role::Supervisor, in_grid: true, is_assignee: false };
        let supervisor_elsewhere = Relation { role: Role::Supervisor, in_grid: false, is_assignee: false };
        let worker_not_assigned = Relation { role: Role::GridWorker, in_grid: true, is_assignee: false };
        assert_eq!(next_state(State::PendingReview, Action::Register, volunteer), Err(Refusal::Forbidden));
        assert_eq!(next_state(State::PendingReview, Action::Register, supervisor_here), Ok(State::Registered));
        assert_eq!(next_state(State::PendingReview, Action::Reject, supervisor_elsewhere), Err(Refusal::Forbidden));
        assert_eq!(next_state(State::Registered, Action::Dispatch, supervisor_here), Err(Refusal::Forbidden));
        assert_eq!(next_state(State::Dispatched, Action::Start, worker_not_assigned), Err(Refusal::Forbidden));
        assert_eq!(next_state(State::Handled, Action::Close, supervisor_here), Ok(State::Closed));
        assert_eq!(initial_state(Role::Volunteer), State::PendingReview);
    }
}

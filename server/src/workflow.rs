//! The case workflow of digital city management (GB/T 30428), as a pure
//! function: given a case's state, the caller and an action, the next state
//! or a refusal. No I/O here, so every transition is testable in a table.
//! The states and actions themselves are defined in `gridwork_protocol::case`.

use gridwork_protocol::api::Role;
use gridwork_protocol::{CaseAction, CaseState};

/// The state a new report starts in: volunteers' reports wait for a
/// supervisor's review; everyone else's are reported directly.
pub fn initial_state(reporter: Role) -> CaseState {
    if reporter == Role::Volunteer { CaseState::PendingReview } else { CaseState::Reported }
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

pub fn next_state(state: CaseState, action: CaseAction, who: Relation) -> Result<CaseState, Refusal> {
    use CaseState::*;
    let target = match (action, state) {
        (CaseAction::Register, Reported | PendingReview) => Registered,
        (CaseAction::Reject, Reported | PendingReview) => Rejected,
        (CaseAction::Merge, Reported | PendingReview | Registered) => Merged,
        (CaseAction::Dispatch, Registered | Reopened) => Dispatched,
        (CaseAction::Start, Dispatched | Reopened) => InProgress,
        (CaseAction::Handle, Dispatched | InProgress) => Handled,
        (CaseAction::Close, Handled) => Closed,
        (CaseAction::Reopen, Handled | Closed) => Reopened,
        _ => return Err(Refusal::InvalidTransition),
    };
    let command_center = matches!(who.role, Role::Dispatcher | Role::Admin);
    let grid_supervisor = who.role == Role::Supervisor && who.in_grid;
    let allowed = match action {
        // 研判/立案 and review of volunteer reports: the command center, or
        // the supervisor of the case's grid.
        CaseAction::Register | CaseAction::Reject | CaseAction::Merge => command_center || grid_supervisor,
        // 派遣 is the command center's alone.
        CaseAction::Dispatch => command_center,
        // 处置 and 反馈: the worker it was dispatched to.
        CaseAction::Start | CaseAction::Handle => who.is_assignee || command_center,
        // 核查结案 and 返工: the command center or the grid's supervisor.
        CaseAction::Close | CaseAction::Reopen => command_center || grid_supervisor,
    };
    if allowed { Ok(target) } else { Err(Refusal::Forbidden) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridwork_protocol::IntoEnumIterator;

    const DISPATCHER: Relation = Relation { role: Role::Dispatcher, in_grid: false, is_assignee: false };

    #[test]
    fn the_whole_closed_loop() {
        let worker = Relation { role: Role::GridWorker, in_grid: true, is_assignee: true };
        let mut state = initial_state(Role::GridWorker);
        for (action, who, expected) in [
            (CaseAction::Register, DISPATCHER, CaseState::Registered),
            (CaseAction::Dispatch, DISPATCHER, CaseState::Dispatched),
            (CaseAction::Start, worker, CaseState::InProgress),
            (CaseAction::Handle, worker, CaseState::Handled),
            (CaseAction::Reopen, DISPATCHER, CaseState::Reopened),
            (CaseAction::Start, worker, CaseState::InProgress),
            (CaseAction::Handle, worker, CaseState::Handled),
            (CaseAction::Close, DISPATCHER, CaseState::Closed),
        ] {
            state = next_state(state, action, who).unwrap();
            assert_eq!(state, expected);
        }
    }

    #[test]
    fn every_state_action_pair_is_decided() {
        // Exactly the listed pairs are transitions; everything else refuses.
        let valid: &[(CaseState, CaseAction)] = &[
            (CaseState::Reported, CaseAction::Register),
            (CaseState::PendingReview, CaseAction::Register),
            (CaseState::Reported, CaseAction::Reject),
            (CaseState::PendingReview, CaseAction::Reject),
            (CaseState::Reported, CaseAction::Merge),
            (CaseState::PendingReview, CaseAction::Merge),
            (CaseState::Registered, CaseAction::Merge),
            (CaseState::Registered, CaseAction::Dispatch),
            (CaseState::Reopened, CaseAction::Dispatch),
            (CaseState::Dispatched, CaseAction::Start),
            (CaseState::Reopened, CaseAction::Start),
            (CaseState::Dispatched, CaseAction::Handle),
            (CaseState::InProgress, CaseAction::Handle),
            (CaseState::Handled, CaseAction::Close),
            (CaseState::Handled, CaseAction::Reopen),
            (CaseState::Closed, CaseAction::Reopen),
        ];
        let admin = Relation { role: Role::Admin, in_grid: true, is_assignee: true };
        for state in CaseState::iter() {
            for action in CaseAction::iter() {
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
        assert_eq!(next_state(CaseState::PendingReview, CaseAction::Register, volunteer), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::PendingReview, CaseAction::Register, supervisor_here), Ok(CaseState::Registered));
        assert_eq!(next_state(CaseState::PendingReview, CaseAction::Reject, supervisor_elsewhere), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::Registered, CaseAction::Dispatch, supervisor_here), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::Dispatched, CaseAction::Start, worker_not_assigned), Err(Refusal::Forbidden));
        assert_eq!(next_state(CaseState::Handled, CaseAction::Close, supervisor_here), Ok(CaseState::Closed));
        assert_eq!(initial_state(Role::Volunteer), CaseState::PendingReview);
    }
}

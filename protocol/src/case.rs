//! The case (案卷) workflow's states and actions, shared by the server that
//! enforces the workflow and the devices that show it.
//!
//! ```text
//! reported ──────────┬─> registered ─> dispatched ─> in_progress ─> handled ─> closed
//! pending_review ────┤        ^             ^             ^            │          │
//!  (volunteer        ├─> rejected           └── reopened ─┴────────────┴──────────┘
//!   reports)         └─> merged                  (返工)
//! ```

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoStaticStr};

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
}

impl Named for CaseState {}

impl CaseState {
    /// From dispatch on, a case is a task (待办) for the grid's workers.
    pub fn is_task(self) -> bool {
        matches!(self, CaseState::Dispatched | CaseState::InProgress | CaseState::Handled | CaseState::Reopened)
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
    Close,
    Reopen,
}

impl Named for CaseAction {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{IntoEnumIterator, assert_names_match_serde};

    #[test]
    fn names_are_stable() {
        assert_names_match_serde::<CaseState>();
        assert_names_match_serde::<CaseAction>();
        let states: Vec<&str> = CaseState::iter().map(CaseState::as_str).collect();
        assert_eq!(
            states,
            ["reported", "pending_review", "registered", "rejected", "merged", "dispatched", "in_progress", "handled", "closed", "reopened"]
        );
        let actions: Vec<&str> = CaseAction::iter().map(CaseAction::as_str).collect();
        assert_eq!(actions, ["register", "reject", "merge", "dispatch", "start", "handle", "close", "reopen"]);
    }
}

//! Who may see what. Every change is written with the audience keys that
//! may see the entity after it, and the keys that saw it before but no
//! longer may (they get a removal). A caller's pull matches its own keys.
//!
//! | role        | keys                                              |
//! | ----------- | ------------------------------------------------- |
//! | everyone    | `public` (categories, grids), `user:<own id>`     |
//! | grid worker, supervisor | `grid:<grid>` for each of their grids (workers also `tasks:<grid>`, which changes written before schema 3 carry) |
//! | dispatcher, admin | `all`                                       |
//! | department  | only `user:` (the cases dispatched to it)          |
//!
//! A case is seen by its reporter (`user:`), its assignee (`user:`), the
//! supervisors and workers of its grid (`grid:`: they review, verify and
//! count every case of their grid), and the command center (`all`).

use gridwork_protocol::api::Role;

use crate::auth::Caller;
use gridwork_protocol::CaseState;

pub const PUBLIC: &str = "public";

pub fn caller_keys(caller: &Caller) -> Vec<String> {
    let mut keys = vec![PUBLIC.to_owned(), format!("user:{}", caller.user_id)];
    match caller.role {
        Role::GridWorker => {
            keys.extend(caller.grids.iter().map(|g| format!("grid:{g}")));
            keys.extend(caller.grids.iter().map(|g| format!("tasks:{g}")));
        }
        Role::Supervisor => keys.extend(caller.grids.iter().map(|g| format!("grid:{g}"))),
        Role::Dispatcher | Role::Admin => keys.push("all".to_owned()),
        Role::Volunteer | Role::Department => {}
    }
    keys
}

/// The facts about a case that decide who sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseScope {
    pub state: CaseState,
    pub grid_code: Option<String>,
    pub reporter_id: String,
    pub assignee_id: Option<String>,
}

pub fn case_audience(case: &CaseScope) -> Vec<String> {
    let mut keys = vec!["all".to_owned(), format!("user:{}", case.reporter_id)];
    if let Some(assignee) = case.assignee_id.as_ref().filter(|a| **a != case.reporter_id) {
        keys.push(format!("user:{assignee}"));
    }
    if let Some(grid) = &case.grid_code {
        keys.push(format!("grid:{grid}"));
    }
    keys
}

pub fn can_see(caller: &Caller, case: &CaseScope) -> bool {
    let mine = caller_keys(caller);
    case_audience(case).iter().any(|k| mine.contains(k))
}

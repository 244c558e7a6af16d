//! Who a user is to the workflow: the roles of grid management. The names
//! are stable: stored by the server and sent on the wire.

use serde::{Deserialize, Serialize};
use strum::{EnumIter, EnumString, IntoStaticStr};

use crate::names::Named;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, IntoStaticStr, EnumString, EnumIter)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    GridWorker,
    Volunteer,
    Supervisor,
    Dispatcher,
    Admin,
    /// A functional department (职能部门) that signs for and handles the
    /// cases dispatched to it.
    Department,
}

impl Named for Role {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_stable() {
        crate::names::assert_names_match_serde::<Role>();
        assert_eq!(Role::GridWorker.as_str(), "grid_worker");
        assert_eq!(Role::Department.as_str(), "department");
    }
}

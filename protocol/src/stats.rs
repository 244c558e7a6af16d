//! Figures (统计) per grid or per person for a period, computed from cases'
//! timelines by one function: the server from its cases, a device from the
//! cases it holds. A grid's workers and supervisors hold every case of their
//! grids, so their devices' figures equal the server's for the same period.

use serde::{Deserialize, Serialize};

use crate::names::Named;
use crate::CaseAction;
use crate::api::IncidentView;
use crate::case::CaseState;

/// Whose figures, over which period `[from_ms, to_ms)` of server time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsQuery {
    /// A grid's figures: events on its cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid_code: Option<String>,
    /// A person's figures (a user name): events they took part in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Reports made (信息采集).
    pub reported: u32,
    /// Review decisions on reports (核实: register, reject, merge, ask).
    pub verified: u32,
    /// Problems resolved on the spot when reported (现场解决).
    pub resolved_on_spot: u32,
    /// Tasks handled (处置反馈), apart from those resolved on the spot.
    pub handled: u32,
    /// Cases closed after verification (核查结案).
    pub closed: u32,
    /// Tasks due in the period and not handled by their deadline.
    pub overdue: u32,
    /// Ratings of the cases closed in the period (a person: of their work).
    pub rated: u32,
    /// Their average, in stars; `None` when nothing was rated.
    pub average_rating: Option<f64>,
}

impl Stats {
    /// The figures as lines for people, named as the terminal tools show
    /// them (the device's `gridwork stats` and `gridwork-server stats`).
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!("reported          {}", self.reported),
            format!("verified (核实)   {}", self.verified),
            format!("resolved on spot  {}", self.resolved_on_spot),
            format!("handled           {}", self.handled),
            format!("closed            {}", self.closed),
            format!("overdue           {}", self.overdue),
            format!("average rating    {}", self.average_rating.map_or("-".to_owned(), |r| format!("{r:.1} of 5 ({} rated)", self.rated))),
        ]
    }
}

const REVIEW_STEPS: [CaseAction; 4] = [CaseAction::Register, CaseAction::Reject, CaseAction::Merge, CaseAction::AskInfo];

/// The figures of `query` over `cases` (each with its whole timeline).
/// Cases outside the query's grid are ignored; a person's figures count
/// the events they acted in, the tasks dispatched to them, and the ratings
/// of the work they handled.
pub fn compute<'a>(cases: impl IntoIterator<Item = &'a IncidentView>, query: &StatsQuery) -> Stats {
    let mut stats = Stats::default();
    let mut rating_sum = 0u32;
    let in_period = |at: i64| at >= query.from_ms && at < query.to_ms;
    for case in cases {
        if query.grid_code.as_ref().is_some_and(|g| case.grid_code.as_ref() != Some(g)) {
            continue;
        }
        let by = |actor: &str| query.user.as_deref().is_none_or(|u| u == actor);
        let assigned = query.user.as_deref().is_none_or(|u| case.assignee.as_deref() == Some(u));
        for entry in case.timeline.iter().filter(|e| in_period(e.at_ms)) {
            let action = CaseAction::parse(&entry.action);
            match action {
                _ if entry.action == "report" && by(&entry.actor) => stats.reported += 1,
                Some(step) if REVIEW_STEPS.contains(&step) && by(&entry.actor) => stats.verified += 1,
                Some(CaseAction::Handle) if by(&entry.actor) => {
                    // Handled at the report itself: resolved on the spot.
                    if entry.from_state == Some(CaseState::Reported) || entry.from_state == Some(CaseState::PendingReview) {
                        stats.resolved_on_spot += 1;
                    } else {
                        stats.handled += 1;
                    }
                }
                Some(CaseAction::Close) if by(&entry.actor) => stats.closed += 1,
                _ => {}
            }
        }
        // A rating belongs to the case as it stands: counted once, when its
        // last close falls in the period (a reopen clears it on the server).
        let last_close = case.timeline.iter().rfind(|e| e.action == CaseAction::Close.as_str());
        if case.state == CaseState::Closed
            && last_close.is_some_and(|e| in_period(e.at_ms))
            && assigned
            && let Some(stars) = case.rating
        {
            stats.rated += 1;
            rating_sum += u32::from(stars);
        }
        // Overdue: due in the period and not handled by then since the task
        // last started (its dispatch or rework). Ask for periods that end by
        // now: a deadline still ahead is not overdue yet.
        if let Some(deadline) = case.deadline_ms.filter(|d| in_period(*d))
            && assigned
        {
            let since = case.timeline.iter().rev().find(|e| matches!(e.action.as_str(), "dispatch" | "reopen")).map_or(i64::MIN, |e| e.at_ms);
            let handled_in_time = case.timeline.iter().any(|e| e.action == CaseAction::Handle.as_str() && e.at_ms >= since && e.at_ms <= deadline);
            if !handled_in_time {
                stats.overdue += 1;
            }
        }
    }
    stats.average_rating = (stats.rated > 0).then(|| f64::from(rating_sum) / f64::from(stats.rated));
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Role, TimelineEntry};
    use uuid::Uuid;

    fn entry(action: &str, actor: &str, from: Option<CaseState>, to: CaseState, at_ms: i64) -> TimelineEntry {
        TimelineEntry { seq: 0, action: action.into(), actor: actor.into(), from_state: from, to_state: to, note: None, at_ms }
    }

    fn case(grid: &str, assignee: Option<&str>, deadline_ms: Option<i64>, rating: Option<u8>, timeline: Vec<TimelineEntry>) -> IncidentView {
        IncidentView {
            id: Uuid::now_v7(),
            state: timeline.last().map(|e| e.to_state).unwrap_or(CaseState::Reported),
            category_code: "0602".into(),
            description: String::new(),
            address: None,
            location: None,
            grid_code: Some(grid.into()),
            reporter: timeline[0].actor.clone(),
            reporter_role: Role::GridWorker,
            assignee: assignee.map(str::to_owned),
            department: None,
            deadline_ms,
            step_deadline_ms: None,
            merged_into: None,
            resubmission_of: None,
            rating,
            photos: vec![],
            missing_evidence: false,
            version: 1,
            reported_at_ms: timeline[0].at_ms,
            updated_at_ms: 0,
            timeline,
        }
    }

    #[test]
    fn figures_per_grid_and_per_person() {
        use CaseState as S;
        let cases = [
            // Reported by w1, dispatched to d1 due at 50, handled late at 60, closed by w2 with 2 stars.
            case(
                "G-001",
                Some("d1"),
                Some(50),
                Some(2),
                vec![
                    entry("report", "w1", None, S::Reported, 10),
                    entry("register", "s1", Some(S::Reported), S::Registered, 11),
                    entry("dispatch", "cc", Some(S::Registered), S::Dispatched, 12),
                    entry("handle", "d1", Some(S::Dispatched), S::Handled, 60),
                    entry("close", "w2", Some(S::Handled), S::Closed, 70),
                ],
            ),
            // Resolved on the spot by w1, closed by s1 with 4 stars.
            case(
                "G-001",
                Some("w1"),
                None,
                Some(4),
                vec![
                    entry("report", "w1", None, S::Reported, 20),
                    entry("handle", "w1", Some(S::Reported), S::Handled, 20),
                    entry("close", "s1", Some(S::Handled), S::Closed, 30),
                ],
            ),
            // Another grid, and an event outside the period.
            case("G-002", None, None, None, vec![entry("report", "w1", None, S::Reported, 15)]),
            case("G-001", None, None, None, vec![entry("report", "w1", None, S::Reported, 500)]),
        ];
        let grid = compute(&cases, &StatsQuery { grid_code: Some("G-001".into()), user: None, from_ms: 0, to_ms: 100 });
        assert_eq!(
            grid,
            Stats { reported: 2, verified: 1, resolved_on_spot: 1, handled: 1, closed: 2, overdue: 1, rated: 2, average_rating: Some(3.0) }
        );
        let w1 = compute(&cases, &StatsQuery { grid_code: None, user: Some("w1".into()), from_ms: 0, to_ms: 100 });
        assert_eq!(w1, Stats { reported: 3, resolved_on_spot: 1, rated: 1, average_rating: Some(4.0), ..Stats::default() });
        let d1 = compute(&cases, &StatsQuery { grid_code: None, user: Some("d1".into()), from_ms: 0, to_ms: 100 });
        assert_eq!(d1, Stats { handled: 1, overdue: 1, rated: 1, average_rating: Some(2.0), ..Stats::default() });
        let later = compute(&cases, &StatsQuery { grid_code: Some("G-001".into()), user: None, from_ms: 100, to_ms: 1000 });
        assert_eq!(later, Stats { reported: 1, ..Stats::default() });
    }
}

//! The task commands (待办): list the user's tasks, and take workflow steps
//! on a case from this device (签收, 处置, 反馈, 退回, 核查). Steps are
//! checked offline as the server would check them and queued for the next
//! sync; the case shows its new state at once.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use gridwork_core::{CaseAction, CaseInfo, CaseState, DeadlineLight, Named, StatsQuery, StepInput, Task, TaskFilter, TaskKind, TimedStep};
use gridwork_protocol::case::step_besides_handling;
use serde_json::{Value, json};

use crate::context::{Ctx, resolve_id, short, text};
use gridwork_core::model::short_id::IdKind;
use crate::error::{CliError, CliResult};
use crate::output::{self, printable};

#[derive(Args, Debug)]
pub struct TasksArgs {
    /// Only this state (dispatched, signed, in_progress, reopened, handled); repeatable
    #[arg(long, value_name = "STATE")]
    pub status: Vec<OsString>,
    /// Only tasks to handle (assigned to you), to verify (handled in your grids), to review
    /// (volunteers' reports in your grids) or to answer (questions about your reports)
    #[arg(long, value_name = "KIND", value_parser = ["handle", "verify", "review", "answer"])]
    pub kind: Option<String>,
    /// Only this deadline light: green, yellow (last quarter of the time), red (overdue)
    #[arg(long, value_name = "LIGHT", value_parser = ["green", "yellow", "red"])]
    pub light: Option<String>,
    /// At most this many
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

#[derive(Subcommand, Debug)]
pub enum TaskCommand {
    /// The whole case as this device knows it (same as `gridwork show`)
    Show { id: OsString },
    /// 签收: sign for a task dispatched to you
    Sign(StepArgs),
    /// 处置: start work on a task
    Start(StepArgs),
    /// A note on a task in work (what was done so far); the state stays (--note is required)
    Note(StepArgs),
    /// 反馈: report the result, with after-photos (--note is required)
    Handle(StepArgs),
    /// 退回: hand the task back to the command center (--note gives the reason)
    HandBack(StepArgs),
    /// 核查: verify a handled case on site: --pass with --rating 1-5, or --fail (rework, --note required)
    Verify(VerifyArgs),
    /// Answer a reviewer's question about your report (--note, and photos if asked)
    Answer(StepArgs),
}

/// The review queue (核实): volunteers' reports in your grids.
#[derive(Subcommand, Debug)]
pub enum ReviewCommand {
    /// Reports waiting for review, oldest first
    List {
        /// At most this many
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// 立案: the report is true; forward it to the command center
    Approve(StepArgs),
    /// Reject the report (--note gives the reason the reporter will read)
    Reject(StepArgs),
    /// Merge the report into the case it duplicates
    Merge {
        /// Report id
        id: OsString,
        /// The case it duplicates
        #[arg(long, value_name = "ID")]
        into: OsString,
        #[arg(long, value_name = "TEXT")]
        note: Option<OsString>,
    },
    /// Ask the reporter for more information (--note is the question)
    Ask(StepArgs),
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// A grid's figures (default: your own)
    #[arg(long, value_name = "CODE")]
    pub grid: Option<OsString>,
    /// A person's figures, by user name (default: you)
    #[arg(long, value_name = "USER", conflicts_with = "grid")]
    pub user: Option<OsString>,
    /// The period: the last N days up to now
    #[arg(long, value_name = "N", default_value_t = 30, conflicts_with_all = ["from_ms", "to_ms"])]
    pub days: u32,
    /// Or from this server time, Unix milliseconds (with --to-ms)
    #[arg(long, value_name = "MS", requires = "to_ms")]
    pub from_ms: Option<i64>,
    /// To this server time, exclusive
    #[arg(long, value_name = "MS", requires = "from_ms")]
    pub to_ms: Option<i64>,
}

#[derive(Args, Debug)]
pub struct StepArgs {
    /// Case id
    pub id: OsString,
    #[arg(long, value_name = "TEXT")]
    pub note: Option<OsString>,
    /// A photo (JPEG, PNG or WebP); repeat for several (handle only)
    #[arg(long, value_name = "FILE")]
    pub photo: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Case id
    pub id: OsString,
    /// The work is done: close the case (核查通过) with --rating
    #[arg(long, conflicts_with = "fail", required_unless_present = "fail")]
    pub pass: bool,
    /// The work is not done: back to the handler for rework (返工)
    #[arg(long)]
    pub fail: bool,
    /// Satisfaction, 1 to 5 stars (评价); with --pass
    #[arg(long, value_name = "STARS", value_parser = clap::value_parser!(u8).range(1..=5), required_if_eq("pass", "true"), conflicts_with = "fail")]
    pub rating: Option<u8>,
    #[arg(long, value_name = "TEXT")]
    pub note: Option<OsString>,
    /// An on-site photo; repeat for several
    #[arg(long, value_name = "FILE")]
    pub photo: Vec<PathBuf>,
}

pub fn tasks(ctx: &Ctx, args: TasksArgs) -> CliResult<()> {
    let states = args
        .status
        .into_iter()
        .map(|s| {
            let s = text("status", s)?;
            CaseState::parse(s.trim()).filter(|state| state.is_task() || state.in_review()).ok_or_else(|| {
                CliError::usage(format!(
                    "unknown task state {:?}: dispatched, signed, in_progress, reopened, handled, pending_review or info_requested",
                    printable(&s, true)
                ))
            })
        })
        .collect::<CliResult<Vec<_>>>()?;
    let filter = TaskFilter {
        states,
        kind: args.kind.as_deref().and_then(|k| TaskKind::ALL.into_iter().find(|kind| kind.as_str() == k)),
        light: args.light.as_deref().and_then(DeadlineLight::parse),
        limit: args.limit,
    };
    let gw = ctx.open()?;
    if gw.session_user()?.is_none() {
        return Err(gridwork_core::Error::NotLoggedIn.into());
    }
    let only_reviews = filter.kind == Some(TaskKind::Review);
    let tasks = gw.tasks(filter)?;
    ctx.emit(tasks.iter().map(task_json).collect(), || {
        if tasks.is_empty() {
            return if only_reviews { "nothing to review".to_owned() } else { "no tasks".to_owned() };
        }
        let rows: Vec<Vec<String>> = tasks
            .iter()
            .map(|t| {
                vec![
                    short(&gw, IdKind::Incident, t.incident_id),
                    t.kind.as_str().to_owned(),
                    t.state.as_str().to_owned(),
                    t.light.map_or_else(|| "-".to_owned(), light_words),
                    t.deadline_step.map_or("-", |s| s.as_str()).to_owned(),
                    t.deadline_ms.map(output::time_words).unwrap_or_else(|| "-".into()),
                    output::clip(&printable(&t.description, true), 40),
                ]
            })
            .collect();
        output::table(&["id", "kind", "state", "light", "due", "deadline", "description"], &rows)
    });
    Ok(())
}

/// A deadline light in its own colour on a terminal.
fn light_words(light: DeadlineLight) -> String {
    let tone = match light {
        DeadlineLight::Green => output::Tone::Good,
        DeadlineLight::Yellow => output::Tone::Warn,
        DeadlineLight::Red => output::Tone::Bad,
    };
    output::tone(light.as_str(), tone)
}

fn task_json(t: &Task) -> Value {
    json!({
        "id": t.incident_id.to_string(),
        "kind": t.kind.as_str(),
        "state": t.state.as_str(),
        "category": t.category_code,
        "description": t.description,
        "address": t.address,
        "grid": t.grid_code,
        "assignee": t.assignee,
        "department": t.department,
        "deadline_ms": t.deadline_ms,
        "deadline": t.deadline_ms.map(output::iso_time),
        "deadline_step": t.deadline_step.map(|s| s.as_str()),
        "light": t.light.map(|l| l.as_str()),
        "note": t.note,
        "reporter": t.reporter,
        "thumbnail_path": t.thumbnail_path.as_ref().map(|p| p.display().to_string()),
    })
}

pub fn task(ctx: &Ctx, command: TaskCommand) -> CliResult<()> {
    let (args, action, rating) = match command {
        // `show` is the device's case screen, served by the commands module.
        TaskCommand::Show { .. } => unreachable!("routed to show by commands::run"),
        TaskCommand::Sign(args) => (args, CaseAction::Sign, None),
        TaskCommand::Start(args) => (args, CaseAction::Start, None),
        TaskCommand::Note(args) => (args, CaseAction::Note, None),
        TaskCommand::Handle(args) => (args, CaseAction::Handle, None),
        TaskCommand::HandBack(args) => (args, CaseAction::HandBack, None),
        TaskCommand::Verify(v) => {
            let action = if v.pass { CaseAction::Close } else { CaseAction::Reopen };
            (StepArgs { id: v.id, note: v.note, photo: v.photo }, action, v.rating)
        }
        TaskCommand::Answer(args) => (args, CaseAction::Answer, None),
    };
    step(ctx, args, action, rating, None)
}

pub fn review(ctx: &Ctx, command: ReviewCommand) -> CliResult<()> {
    let (args, action, merge_into) = match command {
        ReviewCommand::List { limit } => {
            return tasks(ctx, TasksArgs { status: Vec::new(), kind: Some("review".into()), light: None, limit });
        }
        ReviewCommand::Approve(args) => (args, CaseAction::Register, None),
        ReviewCommand::Reject(args) => (args, CaseAction::Reject, None),
        ReviewCommand::Ask(args) => (args, CaseAction::AskInfo, None),
        ReviewCommand::Merge { id, into, note } => (StepArgs { id, note, photo: Vec::new() }, CaseAction::Merge, Some(into)),
    };
    step(ctx, args, action, None, merge_into)
}

fn step(ctx: &Ctx, args: StepArgs, action: CaseAction, rating: Option<u8>, merge_into: Option<std::ffi::OsString>) -> CliResult<()> {
    let note = args.note.map(|n| text("note", n)).transpose()?;
    let gw = ctx.open()?;
    let id = resolve_id(&gw, IdKind::Incident, "id", args.id)?;
    let merge_into = merge_into.map(|into| resolve_id(&gw, IdKind::Incident, "into", into)).transpose()?;
    crate::context::check_photo_files(&args.photo)?;
    let incident = gw.take_step(id, StepInput { note, rating, merge_into, ..StepInput::new(action) }, &args.photo)?;
    let detail = gw.get_incident(id)?;
    let mut value = output::incident_json(&incident, Some(&detail.sync_state));
    value["step"] = action.as_str().into();
    ctx.emit(value, || {
        format!(
            "{} {}: now {} on this device, {}; run `gridwork sync` to send it",
            action.as_str(),
            incident.id,
            incident.status.as_str(),
            output::sync_state_words(detail.incident.status, &detail.sync_state),
        )
    });
    Ok(())
}

/// The case as the server last told it, for `show`.
pub fn case_json(case: &CaseInfo) -> Value {
    json!({
        "state": case.state.as_str(),
        "reporter": case.reporter,
        "assignee": case.assignee,
        "department": case.department,
        "deadline_ms": case.deadline_ms,
        "step_deadline_ms": case.step_deadline_ms,
        "deadline_step": case.deadline_step.map(|s| s.as_str()),
        "light": case.light.map(|l| l.as_str()),
        "rating": case.rating,
        "merged_into": case.merged_into.map(|m| m.to_string()),
        "version": case.version,
        "photos": case.photos.iter().map(|p| json!({
            "photo_id": p.photo_id.to_string(), "role": p.role, "sha256": p.sha256, "bytes": p.byte_size, "arrived": p.arrived,
            "thumbnail_path": p.thumbnail_path.as_ref().map(|t| t.display().to_string()),
        })).collect::<Vec<_>>(),
        "timeline": case.timeline.iter().map(|e| json!({
            "action": e.action, "actor": e.actor, "from": e.from_state.map(|s| s.as_str()), "to": e.to_state.as_str(),
            "note": e.note, "at_ms": e.at_ms, "at": output::iso_time(e.at_ms),
        })).collect::<Vec<_>>(),
    })
}

/// Lines for people: who has it, by when, the rating, the photos and the timeline.
pub fn case_lines(case: &CaseInfo) -> Vec<String> {
    let mut lines = vec![format!("on the server: {} (version {})", case.state.as_str(), case.version)];
    if let Some(assignee) = &case.assignee {
        lines.push(format!("  assignee   {}", printable(assignee, true)));
    }
    if let Some(department) = &case.department {
        lines.push(format!("  department {}", printable(department, true)));
    }
    // Each limit the case has, the light beside the one it runs against now.
    let light_of = |step: TimedStep| match (case.deadline_step, case.light) {
        (Some(current), Some(light)) if current == step => format!(" ({})", light_words(light)),
        _ => String::new(),
    };
    let step_limit = step_besides_handling(case.state).zip(case.step_deadline_ms);
    if let Some((TimedStep::Sign, due)) = step_limit {
        lines.push(format!("  sign by    {}{}", output::time_words(due), light_of(TimedStep::Sign)));
    }
    if let Some(deadline) = case.deadline_ms {
        lines.push(format!("  deadline   {}{}", output::time_words(deadline), light_of(TimedStep::Handle)));
    }
    if let Some((TimedStep::Verify, due)) = step_limit {
        lines.push(format!("  verify by  {}{}", output::time_words(due), light_of(TimedStep::Verify)));
    }
    if let Some(rating) = case.rating {
        lines.push(format!("  rating     {}{} ({rating}/5)", "★".repeat(rating as usize), "☆".repeat(5usize.saturating_sub(rating as usize))));
    }
    for (n, p) in case.photos.iter().enumerate() {
        let arrived = if p.arrived { "arrived" } else { "on its way" };
        lines.push(format!("  photo {:<4} {:<12} {} sha256 {}…", n + 1, printable(&p.role, true), arrived, &p.sha256[..p.sha256.len().min(12)]));
    }
    lines.push("timeline".into());
    for e in &case.timeline {
        let note = e.note.as_deref().map(|n| format!("  “{}”", printable(n, true))).unwrap_or_default();
        lines.push(format!("  {}  {:<15} {:<12} → {}{note}", output::time_words(e.at_ms), printable(&e.action, true), printable(&e.actor, true), e.to_state.as_str()));
    }
    lines
}

/// 统计: computed on this device from the cases it holds (the server's
/// figures once synced), in server time.
pub fn stats(ctx: &Ctx, args: StatsArgs) -> CliResult<()> {
    let gw = ctx.open()?;
    let me = gw.session_user()?.ok_or(gridwork_core::Error::NotLoggedIn)?;
    let grid_code = args.grid.map(|g| text("grid", g)).transpose()?;
    let user = match (args.user.map(|u| text("user", u)).transpose()?, &grid_code) {
        (Some(user), _) => Some(user),
        (None, None) => Some(me.username.clone()),
        (None, Some(_)) => None,
    };
    let now = gw.now().corrected_ms;
    let (from_ms, to_ms) = match (args.from_ms, args.to_ms) {
        (Some(from), Some(to)) => (from, to),
        _ => (now - i64::from(args.days) * 86_400_000, now),
    };
    let query = StatsQuery { grid_code, user, from_ms, to_ms };
    let figures = gw.stats(&query)?;
    let whose = match (&query.grid_code, &query.user) {
        (Some(grid), _) => format!("grid {}", printable(grid, true)),
        (None, Some(user)) => printable(user, true),
        (None, None) => "everyone".to_owned(),
    };
    let value = json!({
        "grid": query.grid_code, "user": query.user, "from_ms": from_ms, "to_ms": to_ms,
        "from": output::iso_time(from_ms), "to": output::iso_time(to_ms),
        "reported": figures.reported, "verified": figures.verified, "resolved_on_spot": figures.resolved_on_spot,
        "handled": figures.handled, "closed": figures.closed, "overdue": figures.overdue,
        "rated": figures.rated, "average_rating": figures.average_rating,
    });
    ctx.emit(value, || {
        let mut lines = vec![format!("figures of {whose}, {} to {}", output::time_words(from_ms), output::time_words(to_ms))];
        lines.extend(figures.lines().into_iter().map(|line| format!("  {line}")));
        lines.join("\n")
    });
    Ok(())
}

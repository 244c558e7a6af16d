//! `gridwork drafts`: reports that were started but not submitted (a
//! `report` interrupted between its draft and its submit, or a draft an app
//! saved), so none is stranded: list them, submit one as it is, or discard it.

use clap::Subcommand;
use gridwork_core::{IncidentFilter, IncidentStatus, Named};
use serde_json::{Value, json};

use crate::context::{Ctx, resolve_id, short};
use gridwork_core::model::short_id::IdKind;
use crate::error::CliResult;
use crate::output::{self, printable};

#[derive(Subcommand, Debug)]
pub enum DraftsCommand {
    /// The drafts on this device, newest first (the default)
    List,
    /// Submit a draft as it is: queued for the next sync (it needs a category)
    Submit {
        /// The draft's id (from `gridwork drafts`)
        id: std::ffi::OsString,
    },
    /// Discard a draft: it is never sent (its audit trail stays)
    Discard {
        /// The draft's id (from `gridwork drafts`)
        id: std::ffi::OsString,
    },
}

pub fn drafts(ctx: &Ctx, command: Option<DraftsCommand>) -> CliResult<()> {
    match command.unwrap_or(DraftsCommand::List) {
        DraftsCommand::List => list(ctx),
        DraftsCommand::Submit { id } => {
            let gw = ctx.open()?;
            let id = resolve_id(&gw, IdKind::Incident, "id", id)?;
            let incident = gw.submit(id)?;
            let detail = gw.get_incident(id)?;
            let mut value = output::incident_json(&incident, Some(&detail.sync_state));
            value["photos"] = detail.photos.iter().map(output::photo_json).collect();
            ctx.emit(value, || format!("submitted {}: {}; run `gridwork sync` to send it", incident.id, output::sync_state_words(incident.status, &detail.sync_state)));
            Ok(())
        }
        DraftsCommand::Discard { id } => {
            let gw = ctx.open()?;
            let id = resolve_id(&gw, IdKind::Incident, "id", id)?;
            gw.discard_draft(id)?;
            ctx.emit(json!({ "id": id.to_string(), "status": IncidentStatus::Discarded.as_str() }), || format!("discarded {id}: it will not be sent"));
            Ok(())
        }
    }
}

fn list(ctx: &Ctx) -> CliResult<()> {
    let gw = ctx.open()?;
    let drafts = gw.list_incidents(IncidentFilter { statuses: vec![IncidentStatus::Draft], ..Default::default() })?;
    let rows: Vec<Value> = drafts.iter().map(|d| output::incident_json(d, None)).collect();
    ctx.emit(Value::Array(rows), || {
        if drafts.is_empty() {
            return format!("no drafts (account {})", printable(&ctx.account, true));
        }
        let rows: Vec<Vec<String>> = drafts
            .iter()
            .map(|d| {
                vec![
                    short(&gw, IdKind::Incident, d.id),
                    output::time_words(d.created_at.corrected_ms),
                    d.category_code.as_deref().map_or("-".to_owned(), |c| printable(c, true)),
                    d.photo_count.to_string(),
                    output::clip(&printable(&d.description, true), 40),
                ]
            })
            .collect();
        format!(
            "{} draft(s), not submitted; `gridwork drafts submit ID` or `gridwork drafts discard ID`:\n{}",
            drafts.len(),
            output::table(&["id", "started", "category", "photos", "description"], &rows)
        )
    });
    Ok(())
}

//! The device commands: each opens the current account's store through the
//! facade a phone uses and prints the result for people or, with `--json`,
//! for scripts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gridwork_protocol::api::PhotoRendition;
use gridwork_core::{DraftFields, GeoPoint, IncidentFilter, IncidentStatus, Named, OutboxSummary, PhotoRole, SyncReport, Trigger};
use serde_json::{Value, json};

use crate::context::{Ctx, resolve_id, text};
use gridwork_core::model::short_id::IdKind;
use crate::device::{Device, KeySource, LOCAL_ACCOUNT};
use crate::error::{CliError, CliResult, UNKNOWN_ACCOUNT, sync_exit};
use crate::output::{self, printable};
use crate::{Cli, Command, IncidentsArgs, LoginArgs, LogoutArgs, ReportArgs, SyncArgs};

/// Runs one command; `Ok` carries the exit status (0 but for `sync`).
pub fn run(cli: Cli) -> CliResult<i32> {
    let json = cli.json;
    let zone = output::choose_zone(cli.utc, std::env::var(output::ZONE_ENV).ok().as_deref()).map_err(CliError::usage)?;
    output::set_zone(zone);
    output::set_colors(!json && output::colors_wanted(std::io::IsTerminal::is_terminal(&std::io::stdout())));
    if let Command::Demo = cli.command {
        return crate::demo::run(json).map(|()| 0);
    }
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        // Into memory first: clap_complete panics on a write error, and a
        // closed pipe (`| head`) must end the program quietly.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "gridwork", &mut script);
        output::print(&String::from_utf8_lossy(&script));
        return Ok(0);
    }
    let Some(dir) = cli.device else {
        return Err(CliError::usage("--device DIR is required (or set GRIDWORK_DEVICE)"));
    };
    let device = Device::prepare(&dir, cli.key_file.as_deref())?;
    if let KeySource::DeviceFile { path, created: true } = &device.key_source {
        eprintln!(
            "note: generated a random database key in {} (mode 0600), for development only; give real keys with --key-file or GRIDWORK_DEVICE_KEY",
            path.display()
        );
    }
    let account = match cli.account {
        Some(account) => {
            let account = text("account", account)?.trim().to_owned();
            // A mistyped --account must not quietly open a new, empty store.
            let is_login = matches!(cli.command, Command::Login(_));
            if !is_login && account != LOCAL_ACCOUNT && !device.known_accounts()?.contains(&account) {
                return Err(CliError::new(
                    UNKNOWN_ACCOUNT,
                    format!(
                        "no account {} on this device: `gridwork accounts` lists them, `gridwork login` adds one",
                        printable(&account, true)
                    ),
                ));
            }
            account
        }
        None => device.current_account()?,
    };
    let ctx = Ctx { device, account, json };
    if let Command::Sync(args) = cli.command {
        return sync(&ctx, args);
    }
    if let Command::Trail = cli.command {
        return trail(&ctx);
    }
    match cli.command {
        Command::Login(args) => login(&ctx, args),
        Command::Logout(args) => logout(&ctx, args),
        Command::Status => status(&ctx),
        Command::Accounts => accounts(&ctx),
        Command::Report(args) => report(&ctx, args),
        Command::Resubmit { id, description, photo } => resubmit(&ctx, id, description, &photo),
        Command::Drafts { command } => crate::drafts::drafts(&ctx, command),
        Command::Categories => categories(&ctx),
        Command::Grids => grids(&ctx),
        Command::ImportGrids { file } => import_grids(&ctx, &file),
        Command::Incidents(args) => incidents(&ctx, args),
        Command::Show { id } => show(&ctx, id),
        Command::Photo { id, number, size } => photo(&ctx, id, number, &size),
        Command::Tasks(args) => crate::tasks::tasks(&ctx, args),
        Command::Task { command: crate::tasks::TaskCommand::Show { id } } => show(&ctx, id),
        Command::Task { command } => crate::tasks::task(&ctx, command),
        Command::Review { command } => crate::tasks::review(&ctx, command),
        Command::Stats(args) => crate::tasks::stats(&ctx, args),
        Command::Outbox => outbox(&ctx),
        Command::Retry { op_id } => retry(&ctx, op_id),
        Command::Sync(_) | Command::Trail | Command::Demo | Command::Completions { .. } => unreachable!("handled above"),
    }
    .map(|()| 0)
}

/// "username@host:port", the account id a login on this server makes.
/// The server is named as the core names it, so `localhost` and
/// `127.0.0.1`, or an address with and without `/v1`, are one account.
pub fn account_id(server_url: &str, username: &str) -> CliResult<String> {
    let url = gridwork_core::sync::server_url::parse(server_url)?;
    Ok(format!("{username}@{}:{}{}", url.host, url.port, url.path))
}

fn unsent(summary: &OutboxSummary) -> u64 {
    summary.pending + summary.in_flight + summary.parked
}

fn login(ctx: &Ctx, args: LoginArgs) -> CliResult<()> {
    let server = text("server", args.server)?.trim().to_owned();
    let username = text("username", args.username)?.trim().to_owned();
    let password = match args.password {
        Some(password) => text("password", password)?,
        None => ask_password(&username, &server)?,
    };
    if username.is_empty() {
        return Err(CliError::usage("--username must not be empty"));
    }
    let account = account_id(&server, &username)?;
    let gw = ctx.device.open(&account)?;
    let user = gw.login(&server, &username, &password, args.allow_insecure_http).map_err(|e| match e {
        gridwork_core::Error::Network(why) => CliError::from(gridwork_core::Error::Network(why.clone()))
            .with_message(format!("cannot reach {}: {why}; check that the server is running and the address is right", printable(&server, true))),
        other => other.into(),
    })?;
    ctx.device.set_current_account(Some(&account))?;
    // Work captured before anyone signed in on this device ("local") is
    // taken over by the account signing in now and goes out with its sync.
    // Work of another account that signed in here earlier is never moved: a
    // shared phone does not send one person's reports under another's name.
    let adopted = if account != LOCAL_ACCOUNT && ctx.device.account_exists(LOCAL_ACCOUNT) {
        gw.adopt_unsent_from(&ctx.device.open(LOCAL_ACCOUNT)?)?
    } else {
        gridwork_core::Adopted::default()
    };
    // Like a phone right after sign-in: fetch the reference data (and send
    // what this account had waiting). A failure here is not a failed login.
    let first_sync = if args.no_sync { None } else { Some(gw.sync_now(Trigger::AppForegrounded, Duration::from_secs(30))?) };
    let waiting = gw.outbox_summary()?;
    let local_unsent = if account != LOCAL_ACCOUNT && ctx.device.account_exists(LOCAL_ACCOUNT) {
        unsent(&ctx.device.open(LOCAL_ACCOUNT)?.outbox_summary()?)
    } else {
        0
    };
    ctx.emit(
        json!({
            "account": account,
            "server": server,
            "user": output::user_json(&user),
            "outbox": output::summary_json(&waiting),
            "local_unsent": local_unsent,
            "adopted": { "incidents": adopted.incidents, "operations": adopted.operations, "photos": adopted.photos },
            "sync": first_sync.as_ref().map(output::sync_report_json),
        }),
        || {
            let mut text = format!("logged in as {} at {}\naccount {} is now current", output::user_line(&user), printable(&server, true), printable(&account, true));
            if adopted.incidents > 0 {
                text.push_str(&format!(
                    "\n{} report(s) captured before sign-in ({} photo(s)) now belong to this account{}",
                    adopted.incidents,
                    adopted.photos,
                    if first_sync.is_some() { " and go out with the sync after login (below)" } else { ": run `gridwork sync` to send them" }
                ));
            }
            if let Some(report) = &first_sync {
                text.push_str(&format!("\nsync after login: {}", output::sync_report_line(report)));
            }
            if unsent(&waiting) > 0 {
                text.push_str(&format!("\n{} item(s) of this account are waiting: run `gridwork sync`", unsent(&waiting)));
            }
            if local_unsent > 0 {
                text.push_str(&format!(
                    "\nnote: {local_unsent} item(s) remain under the account \"local\" (see `gridwork --account local outbox`)"
                ));
            }
            text
        },
    );
    Ok(())
}

/// The password from the terminal, not echoed; a script with no terminal
/// is told how to give it instead of waiting for input that never comes.
fn ask_password(username: &str, server: &str) -> CliResult<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage("no password: give --password or GRIDWORK_PASSWORD (there is no terminal to ask on)"));
    }
    rpassword::prompt_password(format!("password for {} at {}: ", printable(username, true), printable(server, true)))
        .map_err(|e| CliError::usage(format!("could not read the password: {}", e.kind())))
}

fn logout(ctx: &Ctx, args: LogoutArgs) -> CliResult<()> {
    let gw = ctx.open()?;
    let user = gw.session_user()?;
    if args.wipe {
        return logout_and_wipe(ctx, &gw, user, args.export.as_deref());
    }
    gw.logout()?;
    let was_current = ctx.device.current_account()? == ctx.account;
    if was_current {
        ctx.device.set_current_account(None)?;
    }
    let summary = gw.outbox_summary()?;
    ctx.emit(
        json!({ "account": ctx.account, "was_logged_in": user.is_some(), "unsent": unsent(&summary), "current_account": ctx.device.current_account()? }),
        || {
            let mut text = match &user {
                Some(user) => format!("logged out {} (account {})", output::user_line(user), printable(&ctx.account, true)),
                None => format!("account {} was not logged in", printable(&ctx.account, true)),
            };
            if unsent(&summary) > 0 {
                text.push_str(&format!("\n{} unsent item(s) stay queued on this device and go out after this account's next login", unsent(&summary)));
            }
            text
        },
    );
    Ok(())
}

/// Sign out and remove the account's data from this device, after
/// exporting its unsent work when asked; refused while work would be lost.
fn logout_and_wipe(ctx: &Ctx, gw: &gridwork_core::Gridwork, user: Option<gridwork_protocol::api::UserInfo>, export: Option<&std::path::Path>) -> CliResult<()> {
    let exported = match export {
        Some(dir) => Some(gw.export_unsent(dir)?),
        None => None,
    };
    gw.wipe().map_err(|error| match error {
        gridwork_core::Error::UnsentWork { operations, drafts } => CliError::from(error).with_message(format!(
            "{operations} queued operation(s) and {drafts} draft(s) have not reached the server: run `gridwork sync`, or keep a copy with `gridwork logout --wipe --export DIR`"
        )),
        other => other.into(),
    })?;
    if ctx.device.current_account()? == ctx.account {
        ctx.device.set_current_account(None)?;
    }
    let folder = exported.as_ref().map(|e| e.folder.display().to_string());
    ctx.emit(
        json!({ "account": ctx.account, "was_logged_in": user.is_some(), "wiped": true, "exported_to": folder, "current_account": ctx.device.current_account()? }),
        || {
            let mut text = format!("wiped account {} from this device (signed out; database and photos removed)", printable(&ctx.account, true));
            if let (Some(e), Some(folder)) = (&exported, &folder) {
                text.push_str(&format!("
unsent work exported first: {} operation(s), {} draft(s), {} photo(s) in {folder}", e.operations, e.drafts, e.photos));
            }
            text
        },
    );
    Ok(())
}

fn key_source_words(source: &KeySource) -> (String, String) {
    match source {
        KeySource::KeyFile(path) => ("key_file".into(), format!("key file {}", path.display())),
        KeySource::Environment => ("environment".into(), "GRIDWORK_DEVICE_KEY".into()),
        KeySource::DeviceFile { path, .. } => ("device_file".into(), format!("{} (development only)", path.display())),
    }
}

fn status(ctx: &Ctx) -> CliResult<()> {
    let gw = ctx.open()?;
    let user = gw.session_user()?;
    let ended = user.is_some() && gw.needs_login()?;
    let summary = gw.outbox_summary()?;
    let (key_kind, key_words) = key_source_words(&ctx.device.key_source);
    let session_words = match &user {
        Some(_) if ended => format!("signed out (the session ended): sign in again with `gridwork login`; {} item(s) wait", unsent(&summary)),
        Some(user) => output::user_line(user),
        None => "not logged in".into(),
    };
    ctx.emit(
        json!({
            "device": ctx.device.dir.display().to_string(),
            "account": ctx.account,
            "logged_in": user.is_some() && !ended,
            "session_ended": ended,
            "user": user.as_ref().map(output::user_json),
            "key_source": key_kind,
            "outbox": output::summary_json(&summary),
        }),
        || {
            format!(
                "device   {}\naccount  {}\nsession  {}\nkey      {}\noutbox   {}",
                ctx.device.dir.display(),
                printable(&ctx.account, true),
                session_words,
                key_words,
                output::summary_line(&summary)
            )
        },
    );
    Ok(())
}

fn accounts(ctx: &Ctx) -> CliResult<()> {
    let current = ctx.device.current_account()?;
    let mut rows = Vec::new();
    for account in ctx.device.known_accounts()? {
        let (user, summary) = if ctx.device.account_exists(&account) {
            let gw = ctx.device.open(&account)?;
            (gw.session_user()?, Some(gw.outbox_summary()?))
        } else {
            (None, None)
        };
        rows.push((account, user, summary));
    }
    ctx.emit(
        Value::Array(
            rows.iter()
                .map(|(account, user, summary)| {
                    json!({
                        "account": account,
                        "current": *account == current,
                        "logged_in": user.is_some(),
                        "user": user.as_ref().map(output::user_json),
                        "unsent": summary.as_ref().map(unsent).unwrap_or(0),
                        "parked": summary.as_ref().map(|s| s.parked).unwrap_or(0),
                    })
                })
                .collect(),
        ),
        || {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|(account, user, summary)| {
                    vec![
                        if *account == current { "*".to_owned() } else { String::new() },
                        printable(account, true),
                        if user.is_some() { "logged in" } else { "not logged in" }.to_owned(),
                        summary.as_ref().map(unsent).unwrap_or(0).to_string(),
                    ]
                })
                .collect();
            output::table(&["", "account", "session", "unsent"], &table)
        },
    );
    Ok(())
}

fn number(field: &'static str, value: OsString) -> CliResult<f64> {
    let text = text(field, value)?;
    text.trim()
        .parse::<f64>()
        .map_err(|_| CliError::from(gridwork_core::Error::InvalidLocation).with_message(format!("--{field} must be a number of degrees")))
}


fn report(ctx: &Ctx, args: ReportArgs) -> CliResult<()> {
    let category = text("category", args.category)?;
    let description = text("description", args.description)?;
    let address = args.address.map(|a| text("address", a)).transpose()?;
    let location = match (args.lat, args.lon) {
        (None, None) => None,
        (Some(lat), Some(lon)) => Some(GeoPoint {
            lat: number("lat", lat)?,
            lon: number("lon", lon)?,
            accuracy_m: args
                .accuracy
                .map(|a| {
                    text("accuracy", a)?.trim().parse::<f64>().map_err(|_| {
                        CliError::from(gridwork_core::Error::InvalidLocation).with_message("--accuracy must be a number of metres")
                    })
                })
                .transpose()?,
        }),
        _ => return Err(CliError::from(gridwork_core::Error::InvalidLocation).with_message("give both --lat and --lon, or neither")),
    };
    crate::context::check_photo_files(args.photo.iter().chain(&args.after))?;
    let gw = ctx.open()?;
    let fields = DraftFields { category_code: Some(category), description, address, location };
    let draft = gw.create_draft(fields.clone())?;
    let resolved = args.resolved.map(|r| text("resolved", r)).transpose()?;
    let photos: Vec<(&PathBuf, PhotoRole)> =
        args.photo.iter().map(|p| (p, PhotoRole::Evidence)).chain(args.after.iter().map(|p| (p, PhotoRole::After))).collect();
    let count = photos.len();
    let mut from_photo = None;
    let mut progress = output::Progress::new(ctx.json);
    // Ctrl-C lets the photo being stored finish, then stops before the next
    // step; the started report is discarded below like any failed one.
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    let stop_if_interrupted = || {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err(CliError::new(
                crate::error::INTERRUPTED,
                "interrupted: nothing was queued (the report being made is discarded); run the command again",
            ));
        }
        Ok(())
    };
    let attached = (|| -> CliResult<()> {
        let mut evidence_location = None;
        for (i, (path, role)) in photos.iter().enumerate() {
            stop_if_interrupted()?;
            progress.show(&format!("checking and storing photo {} of {count}…", i + 1));
            let photo = gw.attach_photo_as(draft.id, path, *role).map_err(|e| {
                let error = CliError::from(e);
                let message = format!("photo {} of {count}: {}", i + 1, error.message);
                error.with_message(message)
            })?;
            if *role == PhotoRole::Evidence && evidence_location.is_none() {
                evidence_location = photo.exif_location;
            }
        }
        // No --lat/--lon: where the camera was, if its photo says (EXIF GPS).
        if fields.location.is_none()
            && let Some(point) = evidence_location
        {
            gw.update_draft(draft.id, DraftFields { location: Some(point), ..fields.clone() })?;
            from_photo = Some(point);
        }
        stop_if_interrupted()?;
        match &resolved {
            Some(note) => gw.submit_resolved(draft.id, note)?,
            None => gw.submit(draft.id)?,
        };
        Ok(())
    })();
    progress.clear();
    if let Err(error) = attached {
        // Nothing half-done stays behind: the draft is discarded (its audit
        // trail is kept), so running the command again does not duplicate it.
        let _ = gw.discard_draft(draft.id);
        return Err(error);
    }
    let detail = gw.get_incident(draft.id)?;
    let incident = &detail.incident;
    let mut value = output::incident_json(incident, Some(&detail.sync_state));
    value["photos"] = detail.photos.iter().map(output::photo_json).collect();
    value["account"] = ctx.account.clone().into();
    value["location_from"] = if from_photo.is_some() { "photo_exif".into() } else if incident.location.is_some() { "arguments".into() } else { Value::Null };
    if ctx.json {
        output::print_json(&value);
    } else {
        if let Some(point) = from_photo {
            eprintln!("location taken from the photo's GPS (EXIF): {:.6}, {:.6}", point.lat, point.lon);
        }
        // stdout carries the id alone, so `id=$(gridwork report …)` works.
        output::print(&incident.id.to_string());
        let logged_in = gw.session_user()?.is_some();
        eprintln!(
            "queued: {}, category {}, grid {}, {} photo(s), {}{}",
            incident.status.as_str(),
            incident.category_code.as_deref().unwrap_or("-"),
            incident.grid_code.as_deref().unwrap_or("none"),
            detail.photos.len(),
            output::sync_state_words(detail.incident.status, &detail.sync_state),
            if logged_in { "; run `gridwork sync` to send it" } else { "; it goes out after a login and a sync" }
        );
        if incident.location.is_none() {
            eprintln!("note: no location (no --lat/--lon and no GPS in a photo), so no grid: give --lat/--lon for the report to reach its grid");
        }
    }
    Ok(())
}

fn resubmit(ctx: &Ctx, id: OsString, description: Option<OsString>, photos: &[PathBuf]) -> CliResult<()> {
    let description = description.map(|d| text("description", d)).transpose()?;
    crate::context::check_photo_files(photos)?;
    let gw = ctx.open()?;
    let rejected = resolve_id(&gw, IdKind::Incident, "id", id)?;
    let draft = gw.resubmit(rejected)?;
    let done = (|| -> CliResult<()> {
        if let Some(description) = description {
            let fields = DraftFields { category_code: draft.category_code.clone(), description, address: draft.address.clone(), location: draft.location };
            gw.update_draft(draft.id, fields)?;
        }
        for path in photos {
            gw.attach_photo(draft.id, path)?;
        }
        gw.submit(draft.id)?;
        Ok(())
    })();
    if let Err(error) = done {
        // As with `report`: nothing half-done stays behind.
        let _ = gw.discard_draft(draft.id);
        return Err(error);
    }
    let detail = gw.get_incident(draft.id)?;
    let mut value = output::incident_json(&detail.incident, Some(&detail.sync_state));
    value["resubmission_of"] = rejected.to_string().into();
    ctx.emit(value, || format!("{}\nresubmits {rejected}; run `gridwork sync` to send it", draft.id));
    Ok(())
}

fn categories(ctx: &Ctx) -> CliResult<()> {
    let gw = ctx.open()?;
    let categories = gw.categories()?;
    let version = gw.category_table_version()?;
    ctx.emit(Value::Array(categories.iter().map(output::category_json).collect()), || {
        let rows: Vec<Vec<String>> = categories
            .iter()
            .map(|c| {
                let indent = if c.parent_code.is_some() { "  " } else { "" };
                vec![format!("{indent}{}", printable(&c.code, true)), printable(&c.name_zh, true), printable(&c.name_en, true)]
            })
            .collect();
        format!("category table version {version}\n{}", output::table(&["code", "名称", "name"], &rows))
    });
    Ok(())
}

fn grids(ctx: &Ctx) -> CliResult<()> {
    let grids = ctx.open()?.grids()?;
    ctx.emit(Value::Array(grids.iter().map(output::grid_json).collect()), || {
        if grids.is_empty() {
            return "no grids on this device yet (they arrive with a sync, or `gridwork import-grids FILE`)".into();
        }
        let rows: Vec<Vec<String>> = grids
            .iter()
            .map(|g| {
                vec![
                    printable(&g.code, true),
                    g.tier.as_str().to_owned(),
                    printable(&g.name, true),
                    g.management_level.map(|l| l.name_zh().to_owned()).unwrap_or_default(),
                ]
            })
            .collect();
        output::table(&["code", "tier", "name", "level"], &rows)
    });
    Ok(())
}

fn import_grids(ctx: &Ctx, file: &Path) -> CliResult<()> {
    let bytes = std::fs::read(file).map_err(|e| {
        let problem = crate::output::file_problem(file, &e);
        CliError::from(gridwork_core::Error::from(e)).with_message(problem)
    })?;
    let geojson = gridwork_core::text::text_from_bytes("geojson", bytes)?;
    let count = ctx.open()?.import_grids_geojson(&geojson)?;
    ctx.emit(json!({ "imported": count }), || format!("imported {count} grid(s)"));
    Ok(())
}

fn incidents(ctx: &Ctx, args: IncidentsArgs) -> CliResult<()> {
    let mut filter = IncidentFilter { limit: args.limit, ..Default::default() };
    for status in args.status {
        let status = text("status", status)?;
        let parsed = IncidentStatus::parse(status.trim()).ok_or_else(|| {
            let known: Vec<_> = IncidentStatus::all().into_iter().map(IncidentStatus::as_str).collect();
            CliError::usage(format!("unknown status; one of: {}", known.join(", ")))
        })?;
        filter.statuses.push(parsed);
    }
    filter.category_code = args.category.map(|c| text("category", c)).transpose()?;
    filter.grid_code = args.grid.map(|g| text("grid", g)).transpose()?;
    let gw = ctx.open()?;
    let list = gw.list_incidents(filter)?;
    let mut rows = Vec::with_capacity(list.len());
    for incident in list {
        let sync = gw.get_incident(incident.id)?.sync_state;
        rows.push((incident, sync));
    }
    ctx.emit(Value::Array(rows.iter().map(|(i, s)| output::incident_json(i, Some(s))).collect()), || {
        if rows.is_empty() {
            return format!("no incidents on this device (account {})", printable(&ctx.account, true));
        }
        let names = category_names(&gw);
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|(i, s)| {
                let category = category_words(&names, i.category_code.as_deref());
                vec![
                    crate::context::short(&gw, IdKind::Incident, i.id),
                    i.status.as_str().to_owned(),
                    category,
                    i.grid_code.as_deref().map(|g| printable(g, true)).unwrap_or_else(|| "-".into()),
                    i.photo_count.to_string(),
                    output::sync_state_words(i.status, s),
                    output::clip(&printable(&i.description, true), 40),
                ]
            })
            .collect();
        output::table(&["id", "status", "category", "grid", "photos", "sync", "description"], &table)
    });
    Ok(())
}


/// Exit 0 when the trail holds, 1 (after the report) when it does not.
fn trail(ctx: &Ctx) -> CliResult<i32> {
    let check = ctx.open()?.verify_audit_trail()?;
    ctx.emit(serde_json::to_value(&check).expect("serializes"), || match check.broken_at {
        None => {
            let older = if check.unsealed > 0 { format!(" ({} from before chaining)", check.unsealed) } else { String::new() };
            format!("intact: {} entries{older}, head {}", check.entries, check.head)
        }
        Some(seq) => format!("BROKEN at entry {seq}: edited, removed or inserted in the database file after it was written"),
    });
    Ok(if check.intact() { 0 } else { 1 })
}

fn photo(ctx: &Ctx, id: OsString, number: usize, size: &str) -> CliResult<()> {
    let rendition = PhotoRendition::from_query(Some(size))
        .ok_or_else(|| CliError::usage("--size is thumb, 1280, 2048 or original"))?;
    let gw = ctx.open()?;
    let id = resolve_id(&gw, IdKind::Incident, "id", id)?;
    let case = gw.get_incident(id)?.case.ok_or_else(|| CliError::new("not_on_server", "the server has not told this device about the case yet: sync first"))?;
    let photo = number
        .checked_sub(1)
        .and_then(|i| case.photos.get(i))
        .ok_or_else(|| CliError::usage(format!("the case has {} photos: number is 1 to {}", case.photos.len(), case.photos.len())))?;
    let path = gw.photo_file(&photo.sha256, rendition)?;
    ctx.emit(json!({ "path": path.display().to_string(), "sha256": photo.sha256, "role": photo.role, "size": rendition.as_query() }), || {
        path.display().to_string()
    });
    Ok(())
}

/// Category names by code: people know 楼道堆物, not 0602.
fn category_names(gw: &gridwork_core::Gridwork) -> std::collections::HashMap<String, String> {
    gw.categories().unwrap_or_default().into_iter().map(|c| (c.code, c.name_zh)).collect()
}

/// A category's code with its name beside it.
fn category_words(names: &std::collections::HashMap<String, String>, code: Option<&str>) -> String {
    match code {
        Some(code) => format!("{} {}", printable(code, true), names.get(code).map(|n| printable(n, true)).unwrap_or_default()).trim_end().to_owned(),
        None => "-".into(),
    }
}

fn show(ctx: &Ctx, id: OsString) -> CliResult<()> {
    let gw = ctx.open()?;
    let id = resolve_id(&gw, IdKind::Incident, "id", id)?;
    let detail = gw.get_incident(id)?;
    let mut value = output::incident_json(&detail.incident, Some(&detail.sync_state));
    value["photos"] = detail.photos.iter().map(output::photo_json).collect();
    value["audit"] = detail
        .audit
        .iter()
        .map(|a| {
            json!({
                "action": a.action,
                "actor": a.actor,
                "at": output::iso_time(a.at.corrected_ms),
                "at_ms": a.at.corrected_ms,
                "location": a.location.map(|l| json!({ "lat": l.lat, "lon": l.lon })),
                "detail": a.detail.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
            })
        })
        .collect();
    if let Some(case) = &detail.case {
        value["case"] = crate::tasks::case_json(case);
    }
    ctx.emit(value, || {
        let i = &detail.incident;
        let mut lines = vec![
            format!("incident {}", i.id),
            format!("status    {}", i.status.as_str()),
            format!("category  {}", category_words(&category_names(&gw), i.category_code.as_deref())),
            format!("grid      {}", i.grid_code.as_deref().map(|g| printable(g, true)).unwrap_or_else(|| "-".into())),
            format!("reporter  {}", printable(&i.reporter, true)),
            format!("created   {}", output::time_words(i.created_at.corrected_ms)),
            format!("sync      {}", output::sync_state_words(detail.incident.status, &detail.sync_state)),
        ];
        if let Some(location) = i.location {
            lines.push(format!("location  {:.6}, {:.6}", location.lat, location.lon));
        }
        if let Some(address) = &i.address {
            lines.push(format!("address   {}", printable(address, true)));
        }
        lines.push(format!("description\n  {}", printable(&i.description, false).replace('\n', "\n  ")));
        if !detail.photos.is_empty() {
            lines.push("photos".into());
        }
        for p in &detail.photos {
            lines.push(format!("  {}", output::photo_line(p)));
        }
        if let Some(case) = &detail.case {
            lines.extend(crate::tasks::case_lines(case));
        }
        lines.push("audit trail on this device".into());
        for a in &detail.audit {
            lines.push(format!("  {}  {:<14} {}", output::time_words(a.at.corrected_ms), printable(&a.action, true), printable(&a.actor, true)));
        }
        lines.join("\n")
    });
    Ok(())
}

fn outbox(ctx: &Ctx) -> CliResult<()> {
    let gw = ctx.open()?;
    let summary = gw.outbox_summary()?;
    let items = gw.outbox_items()?;
    let mut value = output::summary_json(&summary);
    value["account"] = ctx.account.clone().into();
    value["items"] = items.iter().map(output::operation_json).collect();
    ctx.emit(value, || {
        let mut lines = vec![format!("outbox of {}: {}", printable(&ctx.account, true), output::summary_line(&summary))];
        if items.is_empty() {
            lines.push("nothing waiting to be sent".into());
        } else {
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|op| {
                    // An upload's entity is a photo: its incident is what people know.
                    let incident = if op.entity_kind == "incident" {
                        Some(op.entity_id)
                    } else {
                        op.payload.get("incident_id").and_then(Value::as_str).and_then(|id| gridwork_core::Uuid::parse_str(id).ok())
                    };
                    let incident = incident.map_or_else(|| "-".to_owned(), |id| crate::context::short(&gw, IdKind::Incident, id));
                    output::operation_row(op, &crate::context::short(&gw, IdKind::Operation, op.op_id), &incident)
                })
                .collect();
            lines.push(output::table(&["seq", "op", "kind", "state", "incident", "tries", "detail"], &rows));
        }
        lines.join("\n")
    });
    Ok(())
}

fn retry(ctx: &Ctx, op_id: OsString) -> CliResult<()> {
    let gw = ctx.open()?;
    let op_id = resolve_id(&gw, IdKind::Operation, "op_id", op_id)?;
    gw.retry_parked(op_id)?;
    ctx.emit(json!({ "op_id": op_id.to_string(), "state": "pending" }), || format!("operation {op_id} is queued again; run `gridwork sync`"));
    Ok(())
}

/// What a sync round came to, as `gridwork sync`'s exit status tells it.
fn sync_outcome(report: &SyncReport, was_signed_in: bool) -> (&'static str, i32) {
    if report.device_revoked {
        return ("device_revoked", sync_exit::DEVICE_REVOKED);
    }
    if report.needs_login {
        return if was_signed_in { ("session_ended", sync_exit::SESSION_ENDED) } else { ("not_signed_in", sync_exit::NOT_SIGNED_IN) };
    }
    if report.errors.rejected > 0 {
        ("refused", sync_exit::REFUSED)
    } else if report.completed {
        ("complete", 0)
    } else if report.errors.network > 0 {
        ("unreachable", sync_exit::UNREACHABLE)
    } else {
        ("unfinished", sync_exit::UNFINISHED)
    }
}

/// Set by Ctrl-C during `gridwork sync`.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// One sync round, watched: Ctrl-C asks the core to stop at the next
/// request boundary (nothing half-done: each step is transactional, an
/// upload resumes from its last chunk), and on a terminal a line on stderr
/// tells how far it has got while it runs.
fn watched_sync(ctx: &Ctx, gw: &gridwork_core::Gridwork, budget: Duration) -> CliResult<(SyncReport, bool)> {
    // A second handler cannot be installed; a failure only loses the nicety.
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
    let done = AtomicBool::new(false);
    let report = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut progress = output::Progress::new(ctx.json);
            let started = std::time::Instant::now();
            let mut stopping = false;
            let mut tick = 0u32;
            while !done.load(Ordering::SeqCst) {
                if !stopping && INTERRUPTED.load(Ordering::SeqCst) {
                    gw.cancel_sync();
                    stopping = true;
                    progress.clear();
                    eprintln!("\rstopping at the next request boundary…");
                }
                // Neither read waits behind the sync (a snapshot and the
                // reader connection).
                if tick % 5 == 4
                    && let (Some(now), Ok(summary)) = (gw.sync_progress(), gw.outbox_summary())
                {
                    progress.show(&sync_progress_line(&now, summary.pending + summary.in_flight, started.elapsed()));
                }
                tick += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let report = gw.sync_now(Trigger::ManualRetry, budget);
        done.store(true, Ordering::SeqCst);
        report
    })?;
    Ok((report, INTERRUPTED.load(Ordering::SeqCst)))
}

/// "syncing: 3 to send, 12 sent; photo 1.2 MiB of 3.4 MiB at 850.0 KiB/s; 40 pulled"
fn sync_progress_line(now: &gridwork_core::SyncProgress, to_send: u64, elapsed: Duration) -> String {
    let mut line = format!("syncing: {to_send} to send");
    if now.pushed > 0 {
        line.push_str(&format!(", {} sent", now.pushed));
    }
    if let Some(upload) = now.upload {
        line.push_str(&format!("; photo {} of {}", output::bytes_words(upload.sent), output::bytes_words(upload.size)));
        if now.uploaded_bytes > 0 && elapsed.as_secs_f64() >= 0.5 {
            line.push_str(&format!(" at {}/s", output::bytes_words((now.uploaded_bytes as f64 / elapsed.as_secs_f64()) as u64)));
        }
    }
    if now.photos_uploaded > 0 {
        line.push_str(&format!("; {} photo(s) sent", now.photos_uploaded));
    }
    if now.pulled > 0 {
        line.push_str(&format!("; {} pulled", now.pulled));
    }
    line
}

fn sync(ctx: &Ctx, args: SyncArgs) -> CliResult<i32> {
    let gw = ctx.open()?;
    let was_signed_in = gw.session_user()?.is_some();
    let (report, interrupted) = watched_sync(ctx, &gw, Duration::from_secs(args.budget_secs))?;
    let summary = gw.outbox_summary()?;
    if interrupted {
        let value = json!({
            "account": ctx.account,
            "outcome": "interrupted",
            "exit_status": sync_exit::INTERRUPTED,
            "pushed": report.pushed,
            "photos_uploaded": report.photos_uploaded,
            "outbox": output::summary_json(&summary),
        });
        ctx.emit(value, || {
            format!(
                "interrupted: {} operation(s) and {} photo(s) were sent and are kept; {} wait and the next `gridwork sync` resumes them (a photo upload from its last chunk)",
                report.pushed,
                report.photos_uploaded,
                unsent(&summary)
            )
        });
        return Ok(sync_exit::INTERRUPTED);
    }
    let (outcome, status) = sync_outcome(&report, was_signed_in);
    let mut value = output::sync_report_json(&report);
    value["account"] = ctx.account.clone().into();
    value["outbox"] = output::summary_json(&summary);
    value["outcome"] = outcome.into();
    value["exit_status"] = status.into();
    ctx.emit(value, || {
        let mut lines = vec![format!("sync of {}: {}", printable(&ctx.account, true), output::sync_report_line(&report))];
        let e = &report.errors;
        if e.network + e.transient + e.auth + e.rejected > 0 {
            lines.push(format!("errors: network {}, transient {}, auth {}, rejected {}", e.network, e.transient, e.auth, e.rejected));
        }
        if report.device_revoked {
            lines.push(output::tone(
                "an administrator revoked this device: it no longer syncs. If nothing was unsent its data is wiped; otherwise export it and wipe: `gridwork logout --wipe --export DIR`",
                output::Tone::Bad,
            ));
        } else if report.needs_login {
            lines.push(if was_signed_in {
                "the session has ended: log in again with `gridwork login`; nothing was dropped".into()
            } else {
                "not logged in: run `gridwork login --server URL --username U --password P`".into()
            });
        } else {
            if e.rejected > 0 {
                lines.push(output::tone(&format!("the server refused {} operation(s): they are parked, see `gridwork outbox`", e.rejected), output::Tone::Bad));
            }
            if report.completed {
                lines.push(output::tone("round complete", output::Tone::Good));
            } else {
                let when = report.next_wake_ms.map(|at| format!(" in {} or later", output::duration_words((at - gw.now().device_ms).max(0))));
                let server = ctx.account.rsplit_once('@').map_or("the server", |(_, server)| server);
                let why = if e.network > 0 {
                    format!("{} could not be reached (check that the server is running and the link is up); nothing was lost", printable(server, true))
                } else {
                    "not finished".to_owned()
                };
                lines.push(output::tone(&format!("{why}; try again{}", when.unwrap_or_default()), output::Tone::Warn));
            }
        }
        lines.push(format!("outbox: {}", output::summary_line(&summary)));
        lines.join("\n")
    });
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_name_user_host_and_port() {
        assert_eq!(account_id("http://127.0.0.1:8470/", "worker1").unwrap(), "worker1@127.0.0.1:8470");
        assert_eq!(account_id("https://Gridwork.Example.org", "w").unwrap(), "w@gridwork.example.org:443");
        assert_eq!(account_id("ftp://example.org", "w").unwrap_err().code, "invalid_server_url");
        assert_eq!(account_id("not a url", "w").unwrap_err().code, "invalid_server_url");
        assert_eq!(account_id("http://localhost:8470/v1", "w").unwrap(), "w@127.0.0.1:8470", "one account for both names");
    }

    #[test]
    fn invalid_utf8_arguments_are_refused_with_a_code() {
        use std::os::unix::ffi::OsStringExt;
        let error = text("description", OsString::from_vec(vec![b'a', 0xff])).unwrap_err();
        assert_eq!(error.code, "text_invalid_utf8");
    }
}

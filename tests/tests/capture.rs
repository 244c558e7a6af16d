//! Round trips of the capture API against real encrypted database files and
//! real generated photos.

use gridwork_core::{DraftFields, GeoPoint, IncidentFilter, IncidentStatus, Named, OperationState, SyncState};
use gridwork_tests::*;

fn kinds(items: &[gridwork_core::Operation]) -> Vec<String> {
    items.iter().map(|o| o.kind_name.clone()).collect()
}

fn point(lat: f64, lon: f64) -> Option<GeoPoint> {
    Some(GeoPoint { lat, lon, accuracy_m: Some(8.0) })
}

#[test]
fn draft_edit_attach_submit_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "worker-1");
    gw.import_grids_geojson(&two_grids_geojson()).unwrap();
    gw.set_device_location(point(31.231, 121.465)).unwrap();

    // A draft is saved at once, even with no category yet.
    let draft = gw.create_draft(DraftFields { description: "楼道堆放杂物".into(), ..Default::default() }).unwrap();
    assert_eq!(draft.status, IncidentStatus::Draft);
    assert_eq!(draft.category_code, None);
    assert_eq!(draft.grid_code, None);
    assert_eq!(draft.reporter, "worker-1");

    // Editing sets the category and a location in the east grid.
    let edited = gw
        .update_draft(
            draft.id,
            DraftFields {
                category_code: Some("0602".into()),
                description: "楼道堆放杂物，占用消防通道".into(),
                address: Some("南京东路 100 弄 3 号".into()),
                location: point(31.23, 121.475),
            },
        )
        .unwrap();
    assert_eq!(edited.grid_code.as_deref(), Some("G-002"));
    assert_eq!(edited.category_code.as_deref(), Some("0602"));

    let jpeg = jpeg_bytes(&scene(800, 600, 1), 85, None);
    let path = write_file(photos.path(), "a.jpg", &jpeg);
    let photo = gw.attach_photo(draft.id, &path).unwrap();
    assert_eq!(photo.sha256, sha256_hex(&jpeg));
    assert_eq!((photo.width, photo.height), (800, 600));
    assert_eq!((photo.thumbnail_width, photo.thumbnail_height), (320, 240));
    assert_eq!(std::fs::read(&photo.original_path).unwrap(), jpeg, "the store keeps the original bytes");
    assert!(photo.thumbnail_path.exists());
    // The gallery file may vanish; the store's copy is what counts.
    std::fs::remove_file(&path).unwrap();

    // Attaching the same bytes again is idempotent.
    let path_again = write_file(photos.path(), "again.jpg", &jpeg);
    assert_eq!(gw.attach_photo(draft.id, &path_again).unwrap().id, photo.id);

    let submitted = gw.submit(draft.id).unwrap();
    assert_eq!(submitted.status, IncidentStatus::Submitted);
    assert!(submitted.submitted_at.is_some());

    // Outbox: the incident text, then its photo upload depending on it.
    let items = gw.outbox_items().unwrap();
    assert_eq!(kinds(&items), ["submit_incident", "upload_photo"]);
    assert_eq!(items[1].depends_on, Some(items[0].op_id));
    assert_eq!(items[0].entity_id, draft.id);
    assert_eq!(items[0].payload["photos"][0]["sha256"], photo.sha256);
    assert_eq!(items[0].payload["grid_code"], "G-002");
    assert_eq!(items[1].blob_bytes, jpeg.len() as u64);
    assert!(items.iter().all(|o| o.op_id.get_version_num() == 7 && o.state == OperationState::Pending));
    let summary = gw.outbox_summary().unwrap();
    assert_eq!((summary.pending, summary.parked, summary.acknowledged), (2, 0, 0));
    assert_eq!(summary.photo_bytes_waiting, jpeg.len() as u64);

    // Reading it back: photos, the audit trail with who/when/where/what.
    let detail = gw.get_incident(draft.id).unwrap();
    assert_eq!(detail.photos.len(), 1);
    assert_eq!(detail.sync_state, SyncState::Unsent { pending_operations: 2 });
    let actions: Vec<_> = detail.audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["created", "edited", "photo_attached", "submitted"]);
    assert!(detail.audit.iter().all(|a| a.actor == "worker-1"));
    assert_eq!(detail.audit[0].location.map(|l| l.lat), Some(31.231), "where the worker stood");
    assert!(detail.audit.windows(2).all(|w| w[0].at.device_ms <= w[1].at.device_ms));

    // A submitted incident can no longer be edited, discarded or extended.
    assert_eq!(gw.update_draft(draft.id, DraftFields::default()).unwrap_err().code(), "invalid_state");
    assert_eq!(gw.discard_draft(draft.id).unwrap_err().code(), "invalid_state");
    assert_eq!(gw.submit(draft.id).unwrap_err().code(), "invalid_state");
    assert_eq!(gw.outbox_items().unwrap().len(), 2, "no second submit operation");

    // Everything survives closing and reopening.
    drop(gw);
    let gw = open(dir.path(), "worker-1");
    let again = gw.get_incident(draft.id).unwrap();
    assert_eq!(again.incident, submitted);
    assert_eq!(again.audit.len(), 4);
}

#[test]
fn submit_requires_category_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let no_category = gw.create_draft(DraftFields { description: "x".into(), ..Default::default() }).unwrap();
    assert_eq!(gw.submit(no_category.id).unwrap_err().code(), "incomplete");
    let empty = gw.create_draft(DraftFields { category_code: Some("01".into()), ..Default::default() }).unwrap();
    assert_eq!(gw.submit(empty.id).unwrap_err().code(), "incomplete");
    assert_eq!(gw.outbox_summary().unwrap().pending, 0);
    assert_eq!(gw.get_incident(empty.id).unwrap().incident.status, IncidentStatus::Draft);
}

#[test]
fn discard_keeps_the_trail_and_frees_the_photos() {
    let dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let draft = gw.create_draft(DraftFields { category_code: Some("0102".into()), ..Default::default() }).unwrap();
    let photo = gw.attach_photo(draft.id, &write_file(photos.path(), "p.png", &png_bytes(&scene(64, 48, 2)))).unwrap();
    assert!(photo.original_path.exists());
    gw.discard_draft(draft.id).unwrap();

    let detail = gw.get_incident(draft.id).unwrap();
    assert_eq!(detail.incident.status, IncidentStatus::Discarded);
    assert!(detail.photos.is_empty());
    assert_eq!(detail.audit.last().unwrap().action, "discarded");
    assert!(gw.list_incidents(IncidentFilter::default()).unwrap().is_empty(), "discarded hidden by default");
    assert_eq!(gw.sweep_orphan_files().unwrap(), 2, "original and thumbnail");
    assert!(!photo.original_path.exists());
    assert_eq!(gw.outbox_summary().unwrap().pending, 0, "nothing was ever queued");
}

#[test]
fn remove_photo_from_draft() {
    let dir = tempfile::tempdir().unwrap();
    let photos = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let draft = gw.create_draft(DraftFields { category_code: Some("0102".into()), ..Default::default() }).unwrap();
    let a = gw.attach_photo(draft.id, &write_file(photos.path(), "a.jpg", &jpeg_bytes(&scene(64, 48, 3), 80, None))).unwrap();
    let b = gw.attach_photo(draft.id, &write_file(photos.path(), "b.webp", &webp_bytes(&scene(64, 48, 4)))).unwrap();
    assert_eq!((a.position, b.position), (0, 1));
    gw.remove_photo(draft.id, a.id).unwrap();
    assert_eq!(gw.remove_photo(draft.id, a.id).unwrap_err().code(), "not_found");
    let detail = gw.get_incident(draft.id).unwrap();
    assert_eq!(detail.photos.iter().map(|p| p.id).collect::<Vec<_>>(), [b.id]);
    assert_eq!(detail.incident.photo_count, 1);
    gw.submit(draft.id).unwrap();
    let items = gw.outbox_items().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].payload["photos"].as_array().unwrap().len(), 1);
}

#[test]
fn list_filters_by_status_category_grid_and_dates() {
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(gridwork_core::clock::ManualClock::new(1_000_000));
    let gw = gridwork_core::Gridwork::open_with_clock(config(dir.path(), "w"), Box::new(clock.clone())).unwrap();
    gw.import_grids_geojson(&two_grids_geojson()).unwrap();
    let make = |category: &str, location: Option<GeoPoint>, submit: bool| {
        clock.advance(1_000);
        let i = gw
            .create_draft(DraftFields { category_code: Some(category.into()), description: "d".into(), location, ..Default::default() })
            .unwrap();
        if submit {
            gw.submit(i.id).unwrap();
        }
        i
    };
    let west = make("0101", point(31.23, 121.465), true); // t = 1_001_000
    let east = make("0503", point(31.23, 121.475), true); // t = 1_002_000
    let nowhere = make("0102", point(30.0, 120.0), false); // t = 1_003_000
    let no_location = make("0601", None, true); // t = 1_004_000
    assert_eq!(west.grid_code.as_deref(), Some("G-001"));
    assert_eq!(nowhere.grid_code, None, "outside every grid is allowed");

    let ids = |filter: IncidentFilter| gw.list_incidents(filter).unwrap().into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(IncidentFilter::default()), [no_location.id, nowhere.id, east.id, west.id], "newest first");
    assert_eq!(ids(IncidentFilter { statuses: vec![IncidentStatus::Draft], ..Default::default() }), [nowhere.id]);
    assert_eq!(ids(IncidentFilter { category_code: Some("01".into()), ..Default::default() }), [nowhere.id, west.id], "大类 includes its 小类");
    assert_eq!(ids(IncidentFilter { category_code: Some("0503".into()), ..Default::default() }), [east.id]);
    assert_eq!(ids(IncidentFilter { grid_code: Some("G-001".into()), ..Default::default() }), [west.id]);
    assert_eq!(
        ids(IncidentFilter { created_from_ms: Some(1_002_000), created_before_ms: Some(1_004_000), ..Default::default() }),
        [nowhere.id, east.id]
    );
    assert_eq!(ids(IncidentFilter { limit: Some(1), ..Default::default() }), [no_location.id]);
}

#[test]
fn clock_offset_corrects_every_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let clock = gridwork_core::clock::ManualClock::new(5_000_000);
    let gw = gridwork_core::Gridwork::open_with_clock(config(dir.path(), "w"), Box::new(clock)).unwrap();
    gw.set_server_time_offset_ms(-60_000).unwrap();
    let draft = gw.create_draft(DraftFields { category_code: Some("0101".into()), description: "d".into(), ..Default::default() }).unwrap();
    assert_eq!(draft.created_at.device_ms, 5_000_000);
    assert_eq!(draft.created_at.corrected_ms, 4_940_000);
    gw.submit(draft.id).unwrap();
    let op = &gw.outbox_items().unwrap()[0];
    assert_eq!(op.created_at.corrected_ms, 4_940_000);
    assert_eq!(op.payload["submitted_at"]["corrected_ms"], 4_940_000);
    drop(gw);
    // The offset is persisted.
    let gw = gridwork_core::Gridwork::open_with_clock(config(dir.path(), "w"), Box::new(gridwork_core::clock::ManualClock::new(0))).unwrap();
    assert_eq!(gw.server_time_offset_ms(), -60_000);
}

#[test]
fn categories_grids_and_table_versions() {
    let dir = tempfile::tempdir().unwrap();
    let gw = open(dir.path(), "w");
    let categories = gw.categories().unwrap();
    let top: Vec<_> = categories.iter().filter(|c| c.parent_code.is_none()).map(|c| c.name_zh.as_str()).collect();
    assert_eq!(top, ["市容环境", "宣传广告", "施工管理", "突发事件", "街面秩序", "安全隐患", "矛盾纠纷"]);
    assert!(categories.iter().all(|c| !c.name_en.is_empty()));
    assert!(categories.iter().filter(|c| c.parent_code.is_some()).count() >= 20);
    assert_eq!(gw.category_table_version().unwrap(), 1);

    // A newer table replaces it; codes that vanish become inactive but old
    // incidents keep them.
    let old = gw.create_draft(DraftFields { category_code: Some("0701".into()), ..Default::default() }).unwrap();
    let newer = vec![gridwork_core::Category { code: "99".into(), parent_code: None, name_zh: "其他".into(), name_en: "Other".into() }];
    assert!(gw.replace_categories(2, newer.clone()).unwrap());
    assert!(!gw.replace_categories(2, vec![]).unwrap(), "same version is ignored");
    assert_eq!(gw.categories().unwrap(), newer);
    assert_eq!(gw.get_incident(old.id).unwrap().incident.category_code.as_deref(), Some("0701"));
    assert_eq!(gw.create_draft(DraftFields { category_code: Some("0701".into()), ..Default::default() }).unwrap_err().code(), "unknown_category");

    assert_eq!(gw.import_grids_geojson(&two_grids_geojson()).unwrap(), 2);
    let grids = gw.grids().unwrap();
    let tiers: Vec<_> = grids.iter().map(|g| (g.code.as_str(), g.tier.as_str())).collect();
    assert_eq!(tiers, [("C-01", "community"), ("G-001", "grid"), ("G-002", "grid"), ("S-01", "street")]);
    let g1 = grids.iter().find(|g| g.code == "G-001").unwrap();
    assert_eq!(g1.management_level.map(|l| l.name_zh()), Some("重点关注型"));
    assert_eq!(g1.parent_code.as_deref(), Some("C-01"));
    assert_eq!(gw.locate_grid(GeoPoint { lat: 31.23, lon: 121.461, accuracy_m: None }).unwrap().as_deref(), Some("G-001"));
    assert_eq!(gw.import_grids_geojson("{\"type\":\"FeatureCollection\",\"features\":[{\"properties\":{}}]}").unwrap_err().code(), "invalid_geojson");
}

#[test]
fn accounts_are_partitioned() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "worker-a");
    let draft = a.create_draft(DraftFields { category_code: Some("0101".into()), description: "a's report".into(), ..Default::default() }).unwrap();
    a.submit(draft.id).unwrap();
    let b = open(dir.path(), "worker-b");
    assert!(b.list_incidents(IncidentFilter::default()).unwrap().is_empty());
    assert_eq!(b.outbox_summary().unwrap().pending, 0, "b never sees a's unsent work");
    assert_eq!(b.get_incident(draft.id).unwrap_err().code(), "not_found");
    assert_ne!(a.database_path(), b.database_path());
    // No user name in any path.
    assert!(!a.database_path().to_string_lossy().contains("worker-a"));
}

#[test]
fn work_captured_before_sign_in_moves_to_the_account_once_even_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let camera = tempfile::tempdir().unwrap();
    let local = open(dir.path(), "local");
    let worker = open(dir.path(), "worker-1@gridwork.example:443");

    // Before sign-in: a submitted report with two photos, a draft, a discarded draft.
    let report = local
        .create_draft(DraftFields { category_code: Some("0602".into()), description: "公厕外墙开裂".into(), ..Default::default() })
        .unwrap();
    for seed in [1, 2] {
        let file = write_file(camera.path(), &format!("p{seed}.jpg"), &jpeg_bytes(&scene(320, 240, seed), 85, None));
        local.attach_photo(report.id, &file).unwrap();
    }
    local.submit(report.id).unwrap();
    let draft = local.create_draft(DraftFields { description: "井盖松动".into(), ..Default::default() }).unwrap();
    let dropped = local.create_draft(DraftFields { description: "不要了".into(), ..Default::default() }).unwrap();
    local.discard_draft(dropped.id).unwrap();
    let queued: Vec<String> = local.outbox_items().unwrap().iter().map(|o| o.op_id.to_string()).collect();
    assert_eq!(queued.len(), 3, "the submit and two uploads");

    // A crash after the rows reached the worker's store but before they left
    // "local": both hold them. (The module's own steps, as the facade runs them.)
    let ids = local.with_connection(|c| gridwork_core::adopt::unseen_incidents(c)).unwrap();
    assert_eq!(ids, vec![report.id, draft.id], "not the discarded draft");
    local
        .with_connection(|source| {
            worker.with_connection(|target| {
                let tx = target.transaction()?;
                gridwork_core::adopt::insert_into(source, &tx, &ids, "worker-1@gridwork.example:443", worker.now(), None)?;
                tx.commit()?;
                Ok(())
            })
        })
        .unwrap();

    // Run again, as the next sign-in does: taken over once, gone from "local".
    let adopted = worker.adopt_unsent_from(&local).unwrap();
    assert_eq!(adopted.incidents, 0, "already there: skipped, not doubled");
    assert!(local.list_incidents(IncidentFilter::default()).unwrap().iter().all(|i| i.status == IncidentStatus::Discarded));
    assert!(local.outbox_items().unwrap().is_empty());
    let mine = worker.list_incidents(IncidentFilter::default()).unwrap();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|i| i.reporter == "worker-1@gridwork.example:443"));
    let ops: Vec<String> = worker.outbox_items().unwrap().iter().map(|o| o.op_id.to_string()).collect();
    assert_eq!(ops, queued, "the same operations (ids kept: the server applies each once), in order");
    assert!(worker.outbox_items().unwrap().iter().all(|o| o.state == OperationState::Pending));
    let detail = worker.get_incident(report.id).unwrap();
    assert_eq!(detail.photos.len(), 2);
    for photo in &detail.photos {
        assert!(photo.original_path.exists() && photo.thumbnail_path.exists(), "the files came along");
    }

    // And a clean run from scratch moves everything in one go.
    let fresh = tempfile::tempdir().unwrap();
    let local2 = open(fresh.path(), "local");
    let other = open(fresh.path(), "worker-2@gridwork.example:443");
    let only = local2.create_draft(DraftFields { description: "路灯不亮".into(), ..Default::default() }).unwrap();
    let moved = other.adopt_unsent_from(&local2).unwrap();
    assert_eq!((moved.incidents, moved.operations, moved.photos), (1, 0, 0));
    assert_eq!(other.get_incident(only.id).unwrap().incident.description, "路灯不亮");
    assert!(local2.list_incidents(IncidentFilter::default()).unwrap().is_empty());
    assert_eq!(other.adopt_unsent_from(&local2).unwrap().incidents, 0, "nothing twice");
}

-- Schema version 4: tasks (待办) and the workflow steps a device takes.

-- A task's facts from the server view, in columns for the task list.
ALTER TABLE incidents ADD COLUMN assignee TEXT;
ALTER TABLE incidents ADD COLUMN department TEXT;
ALTER TABLE incidents ADD COLUMN deadline_ms INTEGER;
ALTER TABLE incidents ADD COLUMN task_since_ms INTEGER;
ALTER TABLE incidents ADD COLUMN rating INTEGER;
-- A draft correcting a rejected report: the report it resubmits.
ALTER TABLE incidents ADD COLUMN resubmission_of TEXT;

-- What a photo shows: the report's evidence, an after-photo, a verifier's.
ALTER TABLE photos ADD COLUMN role TEXT NOT NULL DEFAULT 'evidence';

CREATE INDEX incidents_tasks ON incidents (status, deadline_ms);

-- Cases pulled before this version: their facts from the stored view.
UPDATE incidents SET
    assignee = json_extract(server_view, '$.assignee'),
    department = json_extract(server_view, '$.department'),
    deadline_ms = json_extract(server_view, '$.deadline_ms'),
    rating = json_extract(server_view, '$.rating'),
    task_since_ms = (SELECT max(json_extract(e.value, '$.at_ms')) FROM json_each(server_view, '$.timeline') AS e
                     WHERE json_extract(e.value, '$.action') IN ('dispatch', 'reopen'))
WHERE server_view IS NOT NULL AND json_valid(server_view);

-- Thumbnails of other devices' photos on the cases this user works (files
-- under photos/thumbs/ named by SHA-256), fetched by sync for offline screens.
CREATE TABLE case_thumbnails (
    sha256     TEXT PRIMARY KEY,
    fetched_ms INTEGER NOT NULL
) STRICT;

-- The identity index: minimal demographics for matching, the links from source
-- records to masters, review items, the link history and idempotency records.
-- Timestamps are microseconds since the Unix epoch (UTC).

CREATE TABLE masters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    state       TEXT    NOT NULL CHECK (state IN ('ACTIVE', 'MERGED')),
    merged_into INTEGER REFERENCES masters (id),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE source_records (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    system            TEXT    NOT NULL,
    local_id          TEXT    NOT NULL,
    demographics      TEXT    NOT NULL,
    source_updated_at INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (system, local_id)
);

-- Exactly one link per source record: the master it belongs to now.
CREATE TABLE links (
    record_id     INTEGER PRIMARY KEY REFERENCES source_records (id),
    master_id     INTEGER NOT NULL REFERENCES masters (id),
    decision      TEXT    NOT NULL CHECK (decision IN ('MATCH', 'POSSIBLE_MATCH', 'NO_MATCH')),
    link_source   TEXT    NOT NULL CHECK (link_source IN ('AUTO', 'MANUAL')),
    score         REAL    NOT NULL,
    field_weights TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX links_by_master ON links (master_id, record_id);

-- Manual "not this person" decisions: automatic matching never links the record
-- to the master again.
CREATE TABLE no_match (
    record_id  INTEGER NOT NULL REFERENCES source_records (id),
    master_id  INTEGER NOT NULL REFERENCES masters (id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (record_id, master_id)
);

CREATE TABLE review_items (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id       INTEGER NOT NULL REFERENCES source_records (id),
    master_id       INTEGER NOT NULL REFERENCES masters (id),
    candidates      TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('OPEN', 'RESOLVED')),
    outcome         TEXT CHECK (outcome IN ('LINKED', 'NEW_MASTER')),
    resolved_master INTEGER REFERENCES masters (id),
    created_at      INTEGER NOT NULL,
    resolved_at     INTEGER
);
CREATE INDEX review_items_by_state ON review_items (state, id);
CREATE INDEX review_items_by_record ON review_items (record_id);

CREATE TABLE link_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    master_id     INTEGER NOT NULL REFERENCES masters (id),
    event_type    TEXT    NOT NULL,
    record_id     INTEGER REFERENCES source_records (id),
    other_master  INTEGER REFERENCES masters (id),
    decision      TEXT,
    link_source   TEXT,
    score         REAL    NOT NULL,
    field_weights TEXT    NOT NULL,
    actor         TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX link_events_by_master ON link_events (master_id, id);

-- Mutations' idempotency keys and the responses they produced.
CREATE TABLE requests (
    request_id  TEXT    PRIMARY KEY,
    method      TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    response    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

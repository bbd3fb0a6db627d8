//! What the PostgreSQL and SQLite tests share: a small billing silo, its
//! sections, and the fixture values.

#![allow(dead_code, unreachable_pub)]

use serde_json::{Value, json};

/// The local ID with records in every section.
pub const KNOWN: &str = "B-1001";
/// A local ID the silo does not know.
pub const UNKNOWN: &str = "B-9999";
/// A local ID with one good and one malformed invoice.
pub const MALFORMED: &str = "B-1002";
/// Patient data of the known record.
pub const SENSITIVE: &[&str] = &["Okonkwo", "Adaeze", "1971-04-05", "adaeze@example.org"];

/// The tables, in SQL both databases take. Times are text in SQLite.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE accounts (account_ref TEXT PRIMARY KEY, given_names TEXT, family_name TEXT,
        birth_date TEXT, sex TEXT, email TEXT, city TEXT, updated_at TEXT NOT NULL)",
    "CREATE TABLE invoices (id INTEGER PRIMARY KEY, patient_ref TEXT NOT NULL,
        issued_at TEXT NOT NULL, amount_cents INTEGER NOT NULL, status TEXT NOT NULL,
        lines TEXT)",
    "CREATE TABLE payments (id TEXT PRIMARY KEY, patient_ref TEXT NOT NULL,
        paid_at TEXT NOT NULL, amount_cents INTEGER NOT NULL)",
];

/// The rows.
pub const DATA: &[&str] = &[
    "INSERT INTO accounts VALUES
        ('B-1001', 'Adaeze', 'Okonkwo', '1971-04-05', 'female', 'adaeze@example.org', 'Leeds', '2026-01-10 09:00:00'),
        ('B-1002', 'Tom Henry', 'Baker', '1980-02-03', 'm', NULL, NULL, '2026-03-01 12:00:00')",
    "INSERT INTO invoices VALUES
        (1, 'B-1001', '2026-01-05 10:00:00', 12500, 'open', '[{\"code\":\"visit\",\"cents\":12500}]'),
        (2, 'B-1001', '2026-02-05 10:00:00', 4000, 'paid', NULL),
        (3, 'B-1002', '2026-02-07 10:00:00', 900, 'open', '[{\"code\":\"copay\",\"cents\":900}]'),
        (4, 'B-1002', '2026-02-08 10:00:00', 100, 'open', '{not json')",
    "INSERT INTO payments VALUES ('P-1', 'B-1001', '2026-02-06 08:00:00', 4000)",
];

/// The adapter's sections: `invoices` with a field mapping and a JSON column,
/// `payments` with every column, `balance` computed.
pub fn sections() -> Value {
    json!({
        "invoices": {
            "description": "Invoices, newest first",
            "query": "SELECT id, issued_at, amount_cents, status, lines FROM invoices WHERE patient_ref = $1 ORDER BY issued_at DESC",
            "fields": {"id": "id", "issued": "issued_at", "amount_cents": "amount_cents", "status": "status", "lines": "lines"},
            "record_id": "id",
            "update_time": "issued_at",
            "json_columns": ["lines"],
            "suggested_ttl": "5m"
        },
        "payments": {
            "query": "SELECT id, paid_at, amount_cents FROM payments WHERE patient_ref = $1",
            "record_id": "id",
            "update_time": "paid_at"
        },
        "balance": {
            "query": "SELECT sum(amount_cents) AS open_cents FROM invoices WHERE patient_ref = $1 AND status = 'open' GROUP BY patient_ref"
        }
    })
}

/// The identity feed over `accounts`.
pub fn feed() -> Value {
    json!({
        "query": "SELECT account_ref AS local_id, given_names, family_name, birth_date, sex, email AS emails, city, updated_at AS update_time FROM accounts WHERE $1 IS NULL OR updated_at >= $1 ORDER BY account_ref",
        "incremental": true
    })
}

/// Local IDs that try to escape their parameter.
pub const INJECTIONS: &[&str] = &[
    "B-1001' OR '1'='1",
    "x'; DROP TABLE invoices; --",
    "B-1001\" OR 1=1 --",
    "$1",
    "' UNION SELECT 1, 2, 3, 4, 5 --",
];

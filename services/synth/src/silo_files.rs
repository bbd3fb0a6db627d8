//! The quickstart's four silos written into a directory: the EHR as FHIR R4
//! Bulk Data NDJSON with its export manifest (`ehr/`), billing, CRM and
//! marketing as SQLite databases, plus `records.csv` and `truth.csv`. The one
//! place this crate writes files; the caller provides the async runtime.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Connection, SqliteConnection};

use crate::silos::{self, SiloRows};
use crate::{SynthConfig, SynthError, SynthRecord};

const BILLING_SCHEMA: &str = "
CREATE TABLE accounts (account_id TEXT PRIMARY KEY, given_name TEXT, family_name TEXT,
  birth_date TEXT, sex TEXT, address_line TEXT, city TEXT, state TEXT, postal_code TEXT,
  phone TEXT, email TEXT, ssn TEXT, updated_at TEXT NOT NULL);
CREATE TABLE invoices (invoice_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts,
  issued_on TEXT NOT NULL, due_on TEXT NOT NULL, description TEXT NOT NULL,
  amount_cents INTEGER NOT NULL, status TEXT NOT NULL);
CREATE INDEX invoices_account ON invoices (account_id);
CREATE TABLE payments (payment_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts,
  paid_on TEXT NOT NULL, amount_cents INTEGER NOT NULL, method TEXT NOT NULL);
CREATE INDEX payments_account ON payments (account_id);
";

const CRM_SCHEMA: &str = "
CREATE TABLE contacts (contact_id TEXT PRIMARY KEY, given_name TEXT, family_name TEXT,
  birth_date TEXT, sex TEXT, address_line TEXT, city TEXT, state TEXT, postal_code TEXT,
  phone TEXT, email TEXT, ssn TEXT, updated_at TEXT NOT NULL);
CREATE TABLE cases (case_id TEXT PRIMARY KEY, contact_id TEXT NOT NULL REFERENCES contacts,
  opened_at TEXT NOT NULL, channel TEXT NOT NULL, subject TEXT NOT NULL, status TEXT NOT NULL,
  priority TEXT NOT NULL);
CREATE INDEX cases_contact ON cases (contact_id);
CREATE TABLE preferences (contact_id TEXT PRIMARY KEY REFERENCES contacts,
  preferred_language TEXT NOT NULL, preferred_channel TEXT NOT NULL,
  do_not_call INTEGER NOT NULL, best_time TEXT NOT NULL);
";

const MARKETING_SCHEMA: &str = "
CREATE TABLE subscribers (subscriber_id TEXT PRIMARY KEY, given_name TEXT, family_name TEXT,
  birth_date TEXT, sex TEXT, address_line TEXT, city TEXT, state TEXT, postal_code TEXT,
  phone TEXT, email TEXT, ssn TEXT, updated_at TEXT NOT NULL);
CREATE TABLE consents (subscriber_id TEXT NOT NULL REFERENCES subscribers, purpose TEXT NOT NULL,
  status TEXT NOT NULL, recorded_at TEXT NOT NULL, source TEXT NOT NULL,
  PRIMARY KEY (subscriber_id, purpose));
CREATE TABLE channel_preferences (subscriber_id TEXT NOT NULL REFERENCES subscribers,
  channel TEXT NOT NULL, opted_in INTEGER NOT NULL, frequency TEXT NOT NULL,
  PRIMARY KEY (subscriber_id, channel));
CREATE TABLE tessera_consent (system TEXT NOT NULL, local_id TEXT NOT NULL,
  purpose TEXT NOT NULL, section TEXT NOT NULL, decision TEXT NOT NULL);
";

/// Opens a new SQLite database with its schema.
async fn database(path: &Path, schema: &str) -> Result<SqliteConnection, SynthError> {
    if path.exists() {
        return Err(SynthError::Exists(path.to_owned()));
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let mut db = SqliteConnection::connect_with(&options)
        .await
        .map_err(|source| SynthError::CreateDatabase {
            path: path.to_owned(),
            source,
        })?;
    sqlx::raw_sql(schema).execute(&mut db).await?;
    sqlx::raw_sql("BEGIN").execute(&mut db).await?;
    Ok(db)
}

/// Inserts a silo's person row into `table` (keyed by `id_column`).
async fn person_row(
    db: &mut SqliteConnection,
    table: &str,
    id_column: &str,
    r: &SynthRecord,
) -> Result<(), SynthError> {
    let sql = format!(
        "INSERT INTO {table} ({id_column}, given_name, family_name, birth_date, sex, address_line, \
         city, state, postal_code, phone, email, ssn, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '2026-10-01T09:00:00Z')"
    );
    let mut query = sqlx::query(&sql).bind(&r.local_id);
    for field in [
        &r.given_name,
        &r.family_name,
        &r.birth_date,
        &r.sex,
        &r.address_line,
        &r.city,
        &r.state,
        &r.postal_code,
        &r.phone,
        &r.email,
        &r.ssn,
    ] {
        query = query.bind((!field.is_empty()).then_some(field.as_str()));
    }
    query.execute(&mut *db).await?;
    Ok(())
}

/// Writes the quickstart's silos for `config` into `dir` (created if needed)
/// and returns what was written, as the JSON `tessera synth --silos` prints.
/// Silos already in `dir` are never overwritten: that is an error.
pub async fn write_silos(
    config: &SynthConfig,
    dir: &Path,
) -> Result<serde_json::Value, SynthError> {
    let ehr_dir = dir.join("ehr");
    std::fs::create_dir_all(&ehr_dir).map_err(|source| SynthError::Create {
        path: ehr_dir.clone(),
        source,
    })?;
    let mut ndjson = BTreeMap::new();
    for kind in silos::EHR_RESOURCE_TYPES {
        let path = ehr_dir.join(format!("{kind}.ndjson"));
        if path.exists() {
            return Err(SynthError::Exists(path));
        }
        ndjson.insert(kind, (create(&path)?, path, 0u64));
    }
    let mut billing = database(&dir.join("billing.db"), BILLING_SCHEMA).await?;
    let mut crm = database(&dir.join("crm.db"), CRM_SCHEMA).await?;
    let mut marketing = database(&dir.join("marketing.db"), MARKETING_SCHEMA).await?;
    let mut records_csv = csv::Writer::from_writer(create(&dir.join("records.csv"))?);
    let mut truth_csv = csv::Writer::from_writer(create(&dir.join("truth.csv"))?);
    records_csv.write_record(crate::RECORDS_HEADER)?;
    truth_csv.write_record(crate::TRUTH_HEADER)?;

    let mut stream = crate::try_generate(config)?;
    let mut rows_written: BTreeMap<&str, u64> = BTreeMap::new();
    for r in stream.by_ref() {
        records_csv.write_record(r.csv_row())?;
        truth_csv.write_record([&r.source, &r.local_id, &r.person_id.to_string()])?;
        match silos::rows(&r, config.seed) {
            Some(SiloRows::Ehr(resources)) => {
                for (kind, resource) in resources {
                    if let Some((file, path, count)) = ndjson.get_mut(kind) {
                        serde_json::to_writer(&mut *file, &resource)
                            .map_err(std::io::Error::from)
                            .and_then(|()| file.write_all(b"\n"))
                            .map_err(|source| SynthError::WriteFile {
                                path: path.clone(),
                                source,
                            })?;
                        *count += 1;
                    }
                }
            }
            Some(SiloRows::Billing(rows)) => {
                person_row(&mut billing, "accounts", "account_id", &r).await?;
                for (id, issued, due, description, amount, status) in &rows.invoices {
                    sqlx::query("INSERT INTO invoices VALUES (?, ?, ?, ?, ?, ?, ?)")
                        .bind(id)
                        .bind(&r.local_id)
                        .bind(issued)
                        .bind(due)
                        .bind(description)
                        .bind(amount)
                        .bind(status)
                        .execute(&mut billing)
                        .await?;
                }
                for (id, paid_on, amount, method) in &rows.payments {
                    sqlx::query("INSERT INTO payments VALUES (?, ?, ?, ?, ?)")
                        .bind(id)
                        .bind(&r.local_id)
                        .bind(paid_on)
                        .bind(amount)
                        .bind(method)
                        .execute(&mut billing)
                        .await?;
                }
                *rows_written.entry("billing_invoices").or_default() += rows.invoices.len() as u64;
            }
            Some(SiloRows::Crm(rows)) => {
                person_row(&mut crm, "contacts", "contact_id", &r).await?;
                for (id, opened, channel, subject, status, priority) in &rows.cases {
                    sqlx::query("INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?)")
                        .bind(id)
                        .bind(&r.local_id)
                        .bind(opened)
                        .bind(channel)
                        .bind(subject)
                        .bind(status)
                        .bind(priority)
                        .execute(&mut crm)
                        .await?;
                }
                let (language, channel, do_not_call, best_time) = &rows.preferences;
                sqlx::query("INSERT INTO preferences VALUES (?, ?, ?, ?, ?)")
                    .bind(&r.local_id)
                    .bind(language)
                    .bind(channel)
                    .bind(do_not_call)
                    .bind(best_time)
                    .execute(&mut crm)
                    .await?;
                *rows_written.entry("crm_cases").or_default() += rows.cases.len() as u64;
            }
            Some(SiloRows::Marketing(rows)) => {
                person_row(&mut marketing, "subscribers", "subscriber_id", &r).await?;
                for (purpose, status, recorded_at, source) in &rows.consents {
                    sqlx::query("INSERT INTO consents VALUES (?, ?, ?, ?, ?)")
                        .bind(&r.local_id)
                        .bind(purpose)
                        .bind(status)
                        .bind(recorded_at)
                        .bind(source)
                        .execute(&mut marketing)
                        .await?;
                    // A withdrawn newsletter consent is an opt-out of marketing use of
                    // the person's data, in the shape Tessera's consent gate reads.
                    if purpose == "newsletter" && status == "withdrawn" {
                        sqlx::query(
                            "INSERT INTO tessera_consent VALUES ('marketing', ?, 'HMARKT', '*', 'deny')",
                        )
                        .bind(&r.local_id)
                        .execute(&mut marketing)
                        .await?;
                        *rows_written.entry("marketing_opt_outs").or_default() += 1;
                    }
                }
                for (channel, opted_in, frequency) in &rows.channels {
                    sqlx::query("INSERT INTO channel_preferences VALUES (?, ?, ?, ?)")
                        .bind(&r.local_id)
                        .bind(channel)
                        .bind(opted_in)
                        .bind(frequency)
                        .execute(&mut marketing)
                        .await?;
                }
            }
            None => {}
        }
    }
    for db in [&mut billing, &mut crm, &mut marketing] {
        sqlx::raw_sql("COMMIT").execute(&mut *db).await?;
    }
    for db in [billing, crm, marketing] {
        db.close().await?;
    }
    records_csv.flush()?;
    truth_csv.flush()?;
    let mut output = Vec::new();
    let mut resources = serde_json::Map::new();
    for (kind, (mut file, path, count)) in ndjson {
        file.flush()
            .map_err(|source| SynthError::WriteFile { path, source })?;
        output.push(
            serde_json::json!({ "type": kind, "url": format!("{kind}.ndjson"), "count": count }),
        );
        resources.insert(kind.to_owned(), count.into());
    }
    // The FHIR Bulk Data export manifest, with file names relative to it.
    let manifest = serde_json::json!({
        "transactionTime": "2026-11-01T00:00:00Z",
        "request": "$export",
        "requiresAccessToken": false,
        "output": output,
        "error": [],
    });
    let path = ehr_dir.join("manifest.json");
    let mut file = create(&path)?;
    serde_json::to_writer_pretty(&mut file, &manifest)
        .map_err(std::io::Error::from)
        .and_then(|()| file.flush())
        .map_err(|source| SynthError::WriteFile { path, source })?;
    let stats = stream.stats();
    Ok(serde_json::json!({
        "people": stats.people,
        "records": stats.records,
        "silos": stats.silos,
        "traps": stats.traps,
        "ehr_resources": resources,
        "rows": rows_written,
    }))
}

/// Creates a file for buffered writing (and its directory).
fn create(path: &Path) -> Result<BufWriter<File>, SynthError> {
    let failed = |source| SynthError::Create {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| SynthError::Create {
            path: dir.to_owned(),
            source,
        })?;
    }
    Ok(BufWriter::new(File::create(path).map_err(failed)?))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[tokio::test]
    async fn silos_hold_every_record_and_reference_only_known_patients() {
        let dir = tempfile::tempdir().unwrap();
        let config = SynthConfig {
            people: 60,
            seed: 3,
            ..SynthConfig::default()
        };
        let stats = write_silos(&config, dir.path()).await.unwrap();
        let silo_records = |name: &str| {
            stats["silos"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .unwrap()["records"]
                .as_u64()
                .unwrap()
        };

        let patients: HashSet<String> =
            std::fs::read_to_string(dir.path().join("ehr/Patient.ndjson"))
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect();
        assert_eq!(patients.len() as u64, silo_records("ehr"));
        for kind in ["Encounter", "Observation", "Condition", "Immunization"] {
            let text =
                std::fs::read_to_string(dir.path().join(format!("ehr/{kind}.ndjson"))).unwrap();
            for line in text.lines() {
                let r: serde_json::Value = serde_json::from_str(line).unwrap();
                let reference = r.get("subject").or_else(|| r.get("patient")).unwrap()["reference"]
                    .as_str()
                    .unwrap();
                let id = reference.strip_prefix("Patient/").unwrap();
                assert!(patients.contains(id), "{kind} refers to an unknown patient");
            }
        }
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("ehr/manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["output"].as_array().unwrap().len(), 8);

        for (db, table, silo) in [
            ("billing.db", "accounts", "billing"),
            ("crm.db", "contacts", "crm"),
            ("marketing.db", "subscribers", "marketing"),
        ] {
            let options = SqliteConnectOptions::new().filename(dir.path().join(db));
            let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
            let (count,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(count as u64, silo_records(silo), "{db}");
        }
        assert!(
            write_silos(&config, dir.path()).await.is_err(),
            "existing silos are never overwritten"
        );
    }
}

//! MySQL and MariaDB: a statement's time limit and row limit set on the session
//! before it runs, `KILL QUERY` from a connection of its own when its caller goes
//! away, `?` placeholders counted so each can be bound to the local ID, and rows
//! rendered as JSON objects by column type.

use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlRow};
use sqlx::types::time::{Date, OffsetDateTime, PrimitiveDateTime, Time};
use sqlx::{Column, ConnectOptions, Connection, MySql, MySqlPool, Row, TypeInfo, ValueRef};
use tokio::time::Instant;

use super::{Cancel, Running, STATEMENT_TIMEOUT_MARGIN};

/// A MySQL or MariaDB connection running a statement, stopped with `KILL
/// QUERY`.
pub(super) type MyRunning = Running<MySql, MyKill>;

/// Kills a MySQL connection's statement.
pub(super) struct MyKill {
    id: u64,
    options: MySqlConnectOptions,
}

impl Cancel for MyKill {
    async fn cancel(self) -> Result<(), sqlx::Error> {
        let mut killer = self.options.connect().await?;
        // The ID is the server's own number, not a value from a caller.
        let kill = format!("KILL QUERY {}", self.id);
        sqlx::query(&kill).execute(&mut killer).await?;
        killer.close().await
    }
}

impl MyRunning {
    /// Takes a connection and sets its statement time limit from `deadline`
    /// (none without one): MariaDB's `max_statement_time` (seconds), or MySQL's
    /// `max_execution_time` (milliseconds; MySQL applies it to SELECT only);
    /// and the most rows a SELECT returns (`sql_select_limit`; all without one).
    pub(super) async fn start(
        pool: &MySqlPool,
        options: &MySqlConnectOptions,
        deadline: Option<Instant>,
        limit: Option<u64>,
    ) -> Result<Self, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let (id, version): (u64, String) = sqlx::query_as("SELECT CONNECTION_ID(), VERSION()")
            .fetch_one(&mut *conn)
            .await?;
        // A little before the deadline, so that the server ends the statement
        // and answers before the caller gives up; zero is no limit.
        let left = deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .saturating_sub(STATEMENT_TIMEOUT_MARGIN)
                .max(Duration::from_millis(1))
        });
        let set = if version.contains("MariaDB") {
            sqlx::query("SET SESSION max_statement_time = ?, SESSION sql_select_limit = ?")
                .bind(left.map_or(0.0, |d| d.as_secs_f64()))
        } else {
            sqlx::query("SET SESSION max_execution_time = ?, SESSION sql_select_limit = ?")
                .bind(left.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
        };
        // The server's maximum is its default: no limit.
        set.bind(limit.unwrap_or(u64::MAX))
            .execute(&mut *conn)
            .await?;
        let options = options.clone();
        Ok(Self::new(conn, MyKill { id, options }))
    }
}

/// How many `?` placeholders a MySQL statement has: those outside quoted
/// strings, quoted identifiers and comments.
pub(crate) fn placeholders(sql: &str) -> usize {
    let mut count = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '?' => count += 1,
            '\'' | '"' | '`' => {
                // To the closing quote; a doubled quote or (in strings) a
                // backslash escapes one.
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        if chars.peek() == Some(&c) {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
            }
            '#' => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut star = false;
                for d in chars.by_ref() {
                    if star && d == '/' {
                        break;
                    }
                    star = d == '*';
                }
            }
            _ => {}
        }
    }
    count
}

/// A MySQL or MariaDB row as a JSON object, or `None` when a value cannot be
/// read (text or binary that is not UTF-8, a geometry). Integers, floats and
/// decimals become numbers, `BOOLEAN` (`TINYINT(1)`) true or false, dates
/// `YYYY-MM-DD`, date-times ISO 8601 (`TIMESTAMP` in UTC with `Z`, `DATETIME`
/// without an offset, as it is stored), JSON nested, the rest text.
pub(super) fn mysql_row(row: &MySqlRow) -> Option<Map<String, Value>> {
    let mut map = Map::with_capacity(row.columns().len());
    for column in row.columns() {
        let i = column.ordinal();
        let raw = row.try_get_raw(i).ok()?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            let kind = raw.type_info().name().to_owned();
            match kind.as_str() {
                "BOOLEAN" => Value::Bool(row.try_get_unchecked::<i8, _>(i).ok()? != 0),
                "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
                    Value::from(row.try_get_unchecked::<i64, _>(i).ok()?)
                }
                "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED"
                | "INT UNSIGNED" | "BIGINT UNSIGNED" | "BIT" => {
                    Value::from(row.try_get_unchecked::<u64, _>(i).ok()?)
                }
                "FLOAT" => number(f64::from(row.try_get_unchecked::<f32, _>(i).ok()?)),
                "DOUBLE" => number(row.try_get_unchecked::<f64, _>(i).ok()?),
                // Exact text: a whole number stays an integer.
                "DECIMAL" => {
                    match serde_json::from_str(&row.try_get_unchecked::<String, _>(i).ok()?) {
                        Ok(n @ Value::Number(_)) => n,
                        _ => return None,
                    }
                }
                "DATE" => Value::String(date(row.try_get_unchecked::<Date, _>(i).ok()?)),
                "DATETIME" => {
                    let at = row.try_get_unchecked::<PrimitiveDateTime, _>(i).ok()?;
                    Value::String(format!("{}T{}", date(at.date()), time(at.time())))
                }
                "TIMESTAMP" => {
                    // sqlx sets the session's time zone to UTC.
                    let at = row.try_get_unchecked::<OffsetDateTime, _>(i).ok()?;
                    Value::String(format!("{}T{}Z", date(at.date()), time(at.time())))
                }
                "TIME" => Value::String(time(row.try_get_unchecked::<Time, _>(i).ok()?)),
                "JSON" => {
                    serde_json::from_str(&row.try_get_unchecked::<String, _>(i).ok()?).ok()?
                }
                "GEOMETRY" => return None,
                // CHAR, VARCHAR, TEXT, ENUM, SET, and binary strings that hold UTF-8.
                _ => Value::String(row.try_get_unchecked::<String, _>(i).ok()?),
            }
        };
        map.insert(column.name().to_owned(), value);
    }
    Some(map)
}

fn number(n: f64) -> Value {
    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
}

fn date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn time(t: Time) -> String {
    let base = format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    match t.microsecond() {
        0 => base,
        us => format!("{base}.{us:06}"),
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_outside_strings_and_comments_are_counted() {
        assert_eq!(placeholders("SELECT * FROM t WHERE a = ?"), 1);
        assert_eq!(placeholders("SELECT * FROM t WHERE ? IS NULL OR a >= ?"), 2);
        assert_eq!(
            placeholders("SELECT '?', \"?\", `?`, 'it''s ?', 'a\\'?' FROM t WHERE a = ?"),
            1
        );
        assert_eq!(
            placeholders("SELECT 1 -- ?\n FROM t # ?\n WHERE /* ? */ a = ? AND b = 1-?"),
            2
        );
        assert_eq!(placeholders("SELECT $1"), 0);
    }
}

//! The `rest` adapter against an HTTP server in the test harness: the
//! conformance kit with a stalling endpoint and malformed records, each
//! pagination style, a 429, a 503, a slow response, a body that is not JSON,
//! auth (API key, bearer, OAuth 2.0 client credentials) and local IDs that try
//! to escape their path segment.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use tessera_adapter_core::conformance::{self, Fixture, MalformedUpstream, SlowUpstream};
use tessera_adapter_core::{Adapter, FetchError, FetchRequest, HealthCheck, HealthState};
use tessera_adapter_rest::{RestAdapter, RestConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A small CRM/marketing API, written by hand so the test controls every byte
/// and sees when a client hangs up.
#[derive(Clone, Default)]
struct Api {
    base: String,
    /// Requests waiting on the stalling endpoint; a hang-up ends one.
    stalled: Arc<AtomicU64>,
    /// Request targets (path and query) as received.
    targets: Arc<Mutex<Vec<String>>>,
    token_requests: Arc<AtomicU64>,
}

enum Reply {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
        delay: Duration,
    },
    Stall,
}

fn ok(body: Value) -> Reply {
    respond(200, &[], body.to_string())
}

fn respond(status: u16, headers: &[(&str, String)], body: String) -> Reply {
    Reply::Respond {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        body,
        delay: Duration::ZERO,
    }
}

impl Api {
    async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let api = Self {
            base: format!("http://{}", listener.local_addr()?),
            ..Self::default()
        };
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(server.clone().connection(stream));
            }
        });
        Ok(api)
    }

    async fn connection(self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let target = request_line.next().unwrap_or_default().to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
        self.targets.lock().expect("lock").push(target.clone());
        match self.route(&method, &target, &headers, &body) {
            Reply::Stall => {
                self.stalled.fetch_add(1, Ordering::SeqCst);
                // Until the client hangs up, or the deadline it sent passes.
                let deadline = headers
                    .get("x-request-timeout-ms")
                    .and_then(|ms| ms.parse().ok())
                    .map_or(Duration::from_secs(3600), Duration::from_millis);
                let hang_up =
                    async { while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {} };
                let gave_up = tokio::time::timeout(deadline, hang_up).await.is_err();
                self.stalled.fetch_sub(1, Ordering::SeqCst);
                if gave_up {
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 504 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                }
            }
            Reply::Respond {
                status,
                headers,
                body,
                delay,
            } => {
                tokio::time::sleep(delay).await;
                let mut out = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                let _ = stream.write_all(out.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        }
    }

    fn route(
        &self,
        method: &str,
        target: &str,
        headers: &HashMap<String, String>,
        body: &str,
    ) -> Reply {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query: HashMap<&str, &str> =
            query.split('&').filter_map(|p| p.split_once('=')).collect();
        if path == "/token" && method == "POST" {
            self.token_requests.fetch_add(1, Ordering::SeqCst);
            return if body.contains("client_secret=s-1")
                && body.contains("grant_type=client_credentials")
            {
                ok(json!({"access_token": "t-1", "token_type": "Bearer", "expires_in": 3600}))
            } else {
                respond(401, &[], "{}".to_owned())
            };
        }
        let authorized = headers.get("x-api-key").is_some_and(|k| k == "k-1")
            || headers
                .get("authorization")
                .is_some_and(|a| a == "Bearer t-1");
        if !authorized {
            return respond(401, &[], json!({"error": "who are you"}).to_string());
        }
        if path.starts_with("/stall/") {
            return Reply::Stall;
        }
        if path == "/health" {
            return ok(json!({"status": "ok"}));
        }
        if path == "/contacts" {
            let people = [
                json!({"id": "C-1", "name": {"given": "Adaeze", "family": "Okonkwo"}, "born": "1971-04-05",
                       "sex": "female", "emails": ["adaeze@example.org"], "updated": "2026-01-10T09:00:00Z"}),
                json!({"id": "C-2", "name": {"given": "Tom Henry", "family": "Baker"}, "emails": [],
                       "address": {"city": "London"}, "updated": "2026-03-01T12:00:00Z"}),
                json!({"name": {"family": "No Id"}, "updated": "2026-03-02T12:00:00Z"}),
            ];
            let since = query.get("since").map(|s| s.replace("%3A", ":"));
            let matching: Vec<&Value> = people
                .iter()
                .filter(|p| {
                    since
                        .as_deref()
                        .is_none_or(|s| p["updated"].as_str().is_some_and(|u| u >= s))
                })
                .collect();
            let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let items: Vec<&Value> = matching.into_iter().skip((page - 1) * 2).take(2).collect();
            return ok(json!({"items": items}));
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let ["contacts", id, section] = parts.as_slice() else {
            return respond(404, &[], "{}".to_owned());
        };
        match *id {
            "C-LIMIT" => return respond(429, &[("Retry-After", "7".to_owned())], "{}".to_owned()),
            "C-DOWN" => return respond(503, &[("Retry-After", "2".to_owned())], "{}".to_owned()),
            "C-BODY" => return respond(200, &[], "<html>oops</html>".to_owned()),
            "C-SLOW" => {
                return Reply::Respond {
                    status: 200,
                    headers: Vec::new(),
                    body: json!({"data": {}}).to_string(),
                    delay: Duration::from_secs(3),
                };
            }
            "C-1" | "C-MAL" => {}
            _ => return respond(404, &[], json!({"error": "no such contact"}).to_string()),
        }
        match *section {
            "profile" => ok(json!({"data": {
                "id": id, "name": {"given": "Adaeze", "family": "Okonkwo"},
                "email": "adaeze@example.org", "updated": "2026-01-10T09:00:00Z"
            }})),
            "consents" if *id == "C-MAL" => ok(json!({"items": [
                {"id": "k9", "purpose": "newsletters", "status": "granted", "recorded_at": "2026-01-01T00:00:00Z"},
                {"id": {"not": "an id"}, "purpose": "research", "status": "granted"},
                {"id": "k10", "purpose": "sms", "status": "granted", "recorded_at": "last tuesday"}
            ], "next_cursor": null})),
            "consents" => match query.get("cursor") {
                None => ok(json!({"items": [
                    {"id": "k1", "purpose": "newsletters", "channel": "email", "status": "granted", "recorded_at": "2025-06-01T10:00:00Z"},
                    {"id": "k2", "purpose": "reminders", "channel": "sms", "status": "granted", "recorded_at": "2025-06-01T10:00:00Z"}
                ], "next_cursor": "p2"})),
                Some(&"p2") => ok(json!({"items": [
                    {"id": "k3", "purpose": "research", "channel": "email", "status": "withdrawn", "recorded_at": "2026-01-10T09:00:00Z"}
                ], "next_cursor": null})),
                Some(_) => respond(400, &[], "{}".to_owned()),
            },
            "preferences" => {
                let all = [
                    json!({"channel": "email", "opted_in": true}),
                    json!({"channel": "sms", "opted_in": true}),
                    json!({"channel": "phone", "opted_in": false}),
                ];
                let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let size: usize = query
                    .get("per_page")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(10);
                let items: Vec<Value> = all
                    .iter()
                    .skip((page - 1) * size)
                    .take(size)
                    .cloned()
                    .collect();
                ok(Value::Array(items))
            }
            "cases" => match query.get("after") {
                None => respond(
                    200,
                    &[(
                        "Link",
                        format!("<{}/contacts/{id}/cases?after=1>; rel=\"next\"", self.base),
                    )],
                    json!({"cases": [{"id": 1, "subject": "billing question"}]}).to_string(),
                ),
                Some(_) => ok(json!({"cases": [{"id": 2, "subject": "address change"}]})),
            },
            _ => respond(404, &[], "{}".to_owned()),
        }
    }

    fn targets(&self) -> Vec<String> {
        self.targets.lock().expect("lock").clone()
    }
}

fn sections() -> Value {
    json!({
        "profile": {
            "path": "contacts/{local_id}/profile",
            "records": "$.data",
            "fields": {"family_name": "$.name.family", "email": "$.email"},
            "record_id": "$.id",
            "update_time": "$.updated"
        },
        "consents": {
            "description": "Marketing consents",
            "path": "contacts/{local_id}/consents",
            "records": "$.items[*]",
            "record_id": "$.id",
            "update_time": "$.recorded_at",
            "pagination": {"type": "cursor", "cursor": "$.next_cursor", "param": "cursor"}
        },
        "preferences": {
            "description": "Channel preferences",
            "path": "contacts/{local_id}/preferences",
            "records": "$[*]",
            "pagination": {"type": "page_number", "param": "page", "size_param": "per_page", "page_size": 2}
        },
        "cases": {
            "path": "contacts/{local_id}/cases",
            "records": "$.cases[*]",
            "record_id": "$.id",
            "pagination": {"type": "link_header"}
        }
    })
}

/// An adapter for `base` with the API key in a secret file.
fn adapter(base: &str, auth: Value, dir: &tempfile::TempDir) -> anyhow::Result<Arc<RestAdapter>> {
    std::fs::write(dir.path().join("api-key"), "k-1\n")?;
    std::fs::write(dir.path().join("client-secret"), "s-1")?;
    let config: RestConfig = serde_json::from_value(json!({
        "system": "crm",
        "base_url": format!("{base}/"),
        "auth": auth,
        "health_path": "health",
        "deadline_header": "X-Request-Timeout-Ms",
        "sections": sections(),
    }))?;
    Ok(Arc::new(RestAdapter::new(config, dir.path())?))
}

fn api_key() -> Value {
    json!({"type": "api_key", "header": "X-API-Key", "key": {"file": "api-key"}})
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_adapter_passes_the_conformance_kit() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let dir = tempfile::tempdir()?;
    let main = adapter(&api.base, api_key(), &dir)?;
    let stalled = api.stalled.clone();
    let fixture = Fixture {
        known_local_id: "C-1".to_owned(),
        unknown_local_id: "C-404".to_owned(),
        sensitive: ["Okonkwo", "Adaeze", "adaeze@example.org"]
            .map(str::to_owned)
            .to_vec(),
        slow: Some(SlowUpstream {
            adapter: adapter(&format!("{}/stall", api.base), api_key(), &dir)?,
            local_id: "C-1".to_owned(),
            section: "consents".to_owned(),
            upstream_in_flight: Arc::new(move || stalled.load(Ordering::SeqCst)),
        }),
        malformed: Some(MalformedUpstream {
            adapter: main.clone(),
            local_id: "C-MAL".to_owned(),
            section: "consents".to_owned(),
        }),
    };
    let report = conformance::run(main, &fixture).await;
    report.assert_passed();
    assert_eq!(report.skipped(), 0, "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pagination_style_is_followed_and_records_are_mapped() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let dir = tempfile::tempdir()?;
    let adapter = adapter(&api.base, api_key(), &dir)?;
    let request = FetchRequest {
        local_ids: vec!["C-1".to_owned()],
        sections: ["profile", "consents", "preferences", "cases"]
            .map(str::to_owned)
            .to_vec(),
        deadline: soon(),
    };
    let results = adapter.fetch(request).await?;
    let ids = |i: usize| -> Vec<Option<String>> {
        results[i]
            .records
            .as_ref()
            .expect("records")
            .iter()
            .map(|r| r.record_id.clone())
            .collect()
    };
    let profile = &results[0].records.as_ref().expect("profile")[0];
    assert_eq!(
        serde_json::from_str::<Value>(&profile.json)?,
        json!({"family_name": "Okonkwo", "email": "adaeze@example.org"})
    );
    assert_eq!(
        profile.update_time,
        Some(UNIX_EPOCH + Duration::from_secs(1_768_035_600))
    );
    // Cursor: two pages.
    assert_eq!(
        ids(1),
        [Some("k1".into()), Some("k2".into()), Some("k3".into())]
    );
    // Page numbers: a full page, then a short one ends it.
    assert_eq!(results[2].records.as_ref().map(Vec::len), Ok(3));
    // Link header: two pages.
    assert_eq!(ids(3), [Some("1".into()), Some("2".into())]);
    let targets = api.targets();
    for want in [
        "/contacts/C-1/consents?cursor=p2",
        "/contacts/C-1/preferences?page=1&per_page=2",
        "/contacts/C-1/preferences?per_page=2&page=2",
        "/contacts/C-1/cases?after=1",
    ] {
        assert!(
            targets.iter().any(|t| t == want),
            "{want} not in {targets:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_slowness_and_bad_bodies_are_typed_errors() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let dir = tempfile::tempdir()?;
    let adapter = adapter(&api.base, api_key(), &dir)?;
    let one = |id: &str| FetchRequest::one(id, "profile", soon());
    let result = |id: &'static str| {
        let adapter = adapter.clone();
        let request = one(id);
        async move {
            adapter
                .fetch(request)
                .await
                .map(|mut r| r.remove(0).records)
        }
    };
    assert_eq!(
        result("C-LIMIT").await?,
        Err(FetchError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        })
    );
    assert_eq!(
        result("C-DOWN").await?,
        Err(FetchError::Unavailable {
            message: "HTTP 503 from upstream".to_owned(),
            retry_after: Some(Duration::from_secs(2)),
        })
    );
    assert!(matches!(
        result("C-BODY").await?,
        Err(FetchError::Malformed { .. })
    ));
    assert_eq!(result("C-404").await?, Err(FetchError::NotFound));
    let start = Instant::now();
    let slow = adapter
        .fetch(FetchRequest::one(
            "C-SLOW",
            "profile",
            start + Duration::from_millis(300),
        ))
        .await?;
    assert_eq!(slow[0].records, Err(FetchError::DeadlineExceeded));
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );

    let wrong = tempfile::tempdir()?;
    std::fs::write(wrong.path().join("key"), "k-2")?;
    let refused = adapter_with_key_file(&api.base, &wrong)?;
    let results = refused.fetch(one("C-1")).await?;
    assert_eq!(
        results[0].records,
        Err(FetchError::Denied {
            message: "HTTP 401 from upstream".to_owned()
        })
    );
    assert_eq!(refused.check().await.state, HealthState::NotServing);
    assert_eq!(adapter.check().await.state, HealthState::Serving);
    Ok(())
}

fn adapter_with_key_file(base: &str, dir: &tempfile::TempDir) -> anyhow::Result<RestAdapter> {
    let config: RestConfig = serde_json::from_value(json!({
        "system": "crm",
        "base_url": format!("{base}/"),
        "auth": {"type": "api_key", "header": "X-API-Key", "key": {"file": "key"}},
        "health_path": "health",
        "sections": sections(),
    }))?;
    Ok(RestAdapter::new(config, dir.path())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_id_stays_inside_its_path_segment() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let dir = tempfile::tempdir()?;
    let adapter = adapter(&api.base, api_key(), &dir)?;
    for id in [
        "../../health?x=1#y",
        "C-1/../../health",
        "C-1 OR 1=1",
        "%2e%2e",
    ] {
        let results = adapter
            .fetch(FetchRequest::one(id, "profile", soon()))
            .await?;
        assert_eq!(results[0].records, Err(FetchError::NotFound), "{id:?}");
    }
    for id in [".", ".."] {
        let results = adapter
            .fetch(FetchRequest::one(id, "profile", soon()))
            .await?;
        assert_eq!(results[0].records, Err(FetchError::NotFound), "{id:?}");
    }
    let targets = api.targets();
    assert_eq!(
        targets,
        [
            "/contacts/..%2F..%2Fhealth%3Fx%3D1%23y/profile",
            "/contacts/C-1%2F..%2F..%2Fhealth/profile",
            "/contacts/C-1%20OR%201%3D1/profile",
            "/contacts/%252e%252e/profile",
        ],
        "`.` and `..` are never sent"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_client_credentials_fetch_one_token_and_bearer_tokens_work() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let dir = tempfile::tempdir()?;
    let oauth = adapter(
        &api.base,
        json!({"type": "oauth2_client_credentials", "token_url": format!("{}/token", api.base),
               "client_id": "tessera", "client_secret": {"file": "client-secret"}, "scope": "crm.read"}),
        &dir,
    )?;
    for _ in 0..3 {
        let results = oauth
            .fetch(FetchRequest::one("C-1", "consents", soon()))
            .await?;
        assert_eq!(results[0].records.as_ref().map(Vec::len), Ok(3));
    }
    assert_eq!(
        api.token_requests.load(Ordering::SeqCst),
        1,
        "the token is cached"
    );

    std::fs::write(dir.path().join("token"), "t-1")?;
    let bearer = adapter(
        &api.base,
        json!({"type": "bearer", "token": {"file": "token"}}),
        &dir,
    )?;
    let results = bearer
        .fetch(FetchRequest::one("C-1", "profile", soon()))
        .await?;
    assert_eq!(results[0].records.as_ref().map(Vec::len), Ok(1));

    std::fs::write(dir.path().join("client-secret"), "wrong")?;
    let config: RestConfig = serde_json::from_value(json!({
        "system": "crm", "base_url": format!("{}/", api.base),
        "auth": {"type": "oauth2_client_credentials", "token_url": format!("{}/token", api.base),
                 "client_id": "tessera", "client_secret": {"file": "client-secret"}},
        "sections": sections(),
    }))?;
    let refused = RestAdapter::new(config, dir.path())?;
    let results = refused
        .fetch(FetchRequest::one("C-1", "profile", soon()))
        .await?;
    assert_eq!(
        results[0].records,
        Err(FetchError::Denied {
            message: "HTTP 401 from the token endpoint".to_owned()
        })
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_feed_pages_through_people_incrementally() -> anyhow::Result<()> {
    use futures_util::StreamExt;
    let api = Api::start().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("api-key"), "k-1")?;
    let config: RestConfig = serde_json::from_value(json!({
        "system": "crm",
        "base_url": format!("{}/", api.base),
        "auth": api_key(),
        "sections": sections(),
        "identity_feed": {
            "path": "contacts",
            "records": "$.items[*]",
            "fields": {
                "local_id": "$.id", "given_names": "$.name.given", "family_name": "$.name.family",
                "birth_date": "$.born", "sex": "$.sex", "emails": "$.emails[*]",
                "city": "$.address.city", "update_time": "$.updated"
            },
            "updated_since_param": "since",
            "pagination": {"type": "page_number", "param": "page", "page_size": 2}
        }
    }))?;
    let adapter = RestAdapter::new(config, dir.path())?;
    assert!(adapter.describe().capabilities.incremental_identity_feed);
    let all: Vec<_> = adapter.identity_feed(None).collect().await;
    // The third person has no ID: skipped.
    let people: Vec<_> = all.iter().map(|r| r.as_ref().expect("a record")).collect();
    assert_eq!(people.len(), 2);
    assert_eq!(people[0].local_id, "C-1");
    assert_eq!(people[0].demographics.family_name, "Okonkwo");
    assert_eq!(people[0].demographics.emails, ["adaeze@example.org"]);
    assert_eq!(people[1].demographics.given_names, ["Tom", "Henry"]);
    assert_eq!(people[1].demographics.addresses[0].city, "London");
    let since = UNIX_EPOCH + Duration::from_secs(1_769_904_000); // 2026-02-01
    let recent: Vec<_> = adapter.identity_feed(Some(since)).collect().await;
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].as_ref().expect("a record").local_id, "C-2");
    assert!(
        api.targets()
            .iter()
            .any(|t| t.starts_with("/contacts?since=2026-02-01T00%3A00%3A00Z&page=1")),
        "{:?}",
        api.targets()
    );
    Ok(())
}

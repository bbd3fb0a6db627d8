use std::path::Path;
use std::time::Duration;

use super::{Config, LogFormat};

fn error_of(yaml: &str) -> String {
    Config::parse(yaml, Path::new("tessera.yaml"))
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn quickstart_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/tessera.yaml");
    let config = Config::load(&path).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:50051");
    assert_eq!(
        config.server.shutdown_grace_period.0,
        Duration::from_secs(30)
    );
}

#[test]
fn defaults_fill_optional_fields() {
    let config = Config::parse("server:\n  listen: 127.0.0.1:0\n", Path::new("t.yaml")).unwrap();
    assert_eq!(
        config.server.shutdown_grace_period.0,
        Duration::from_secs(30)
    );
    assert_eq!(config.logging.format, LogFormat::Text);
    assert_eq!(config.logging.level.0, "info");
}

#[test]
fn unknown_key_names_line_and_field() {
    let err = error_of("server:\n  listen: 127.0.0.1:0\n  shutdown_grace_periods: 10s\n");
    insta::assert_snapshot!(err);
}

#[test]
fn unknown_top_level_key_names_line() {
    let err = error_of("server:\n  listen: 127.0.0.1:0\nadapterz: []\n");
    insta::assert_snapshot!(err);
}

#[test]
fn wrong_type_names_line_and_field() {
    let err = error_of("server:\n  listen: 127.0.0.1:0\nlogging:\n  - json\n");
    insta::assert_snapshot!(err);
}

#[test]
fn duration_without_unit_names_line_and_field() {
    let err = error_of("server:\n  listen: 127.0.0.1:0\n  shutdown_grace_period: 30\n");
    insta::assert_snapshot!(err);
}

#[test]
fn unparsable_address_names_line_and_field() {
    let err = error_of("server:\n  listen: localhost\n");
    insta::assert_snapshot!(err);
}

#[test]
fn missing_required_field_names_line_and_field() {
    let err = error_of("logging:\n  format: json\nserver:\n  shutdown_grace_period: 5s\n");
    insta::assert_snapshot!(err);
}

#[test]
fn out_of_range_value_names_line_and_field() {
    let err = error_of("server:\n  listen: 127.0.0.1:0\n  shutdown_grace_period: 2h\n");
    insta::assert_snapshot!(err);
}

#[test]
fn bad_enum_value_lists_the_choices() {
    let err = error_of("server:\n  listen: 127.0.0.1:0\nlogging:\n  format: xml\n");
    insta::assert_snapshot!(err);
}

#[test]
fn yaml_syntax_error_names_line() {
    let err = error_of("server:\n  listen: \"127.0.0.1:0\n");
    insta::assert_snapshot!(err);
}

#[test]
fn json_schema_documents_every_field() {
    let schema = Config::json_schema();
    let value: serde_json::Value = serde_json::from_str(&schema).unwrap();
    assert_every_property_documented(&value, &value);
    for (kind, kind_schema) in value["x-adapter-kinds"].as_object().unwrap() {
        assert!(
            kind_schema.get("properties").is_some(),
            "{kind} has no schema"
        );
        assert_every_property_documented(kind_schema, kind_schema);
    }
    insta::assert_snapshot!(schema);
}

/// Walks the schema and fails on any property without a description.
fn assert_every_property_documented(root: &serde_json::Value, node: &serde_json::Value) {
    if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
        for (name, prop) in props {
            let described = prop.get("description").is_some()
                || prop
                    .get("$ref")
                    .and_then(|r| r.as_str())
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .and_then(|d| root["$defs"].get(d))
                    .is_some_and(|d| d.get("description").is_some());
            assert!(described, "config field `{name}` has no description");
        }
    }
    if let Some(defs) = node.get("$defs").and_then(|d| d.as_object()) {
        for def in defs.values() {
            assert_every_property_documented(root, def);
        }
    }
}

#[test]
fn identity_section_parses_with_defaults() {
    let config = Config::parse(
        "server:\n  listen: 127.0.0.1:0\nidentity:\n  store: sqlite://data/identity.db\n  source_priority: [ehr, billing]\n",
        Path::new("t.yaml"),
    )
    .unwrap();
    let identity = config.identity.unwrap();
    assert_eq!(identity.store.0, "sqlite://data/identity.db");
    assert_eq!(identity.source_priority, ["ehr", "billing"]);
    assert!(identity.model.is_none() && identity.match_threshold.is_none());
    assert!(identity.deduplicated_sources.is_empty());
    let config = Config::parse(
        "server:\n  listen: 127.0.0.1:0\nidentity:\n  store: sqlite://data/identity.db\n  deduplicated_sources: [registry]\n",
        Path::new("t.yaml"),
    )
    .unwrap();
    let matching = crate::identity::match_config(&config.identity.unwrap());
    assert!(matching.deduplicated_sources.contains("registry"));
    assert!(
        Config::parse("server:\n  listen: 127.0.0.1:0\n", Path::new("t.yaml"))
            .unwrap()
            .identity
            .is_none()
    );
}

#[test]
fn a_bad_store_url_is_named_without_echoing_it() {
    let err =
        error_of("server:\n  listen: 127.0.0.1:0\nidentity:\n  store: mysql://root:hunter2@db/x\n");
    assert!(!err.contains("hunter2"), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn store_url_debug_hides_credentials() {
    let url = super::StoreUrl("postgres://tessera:hunter2@db:5432/identity".to_owned());
    assert_eq!(format!("{url:?}"), "postgres://***");
}

#[test]
fn thresholds_out_of_order_are_rejected() {
    let err = error_of(
        "server:\n  listen: 127.0.0.1:0\nidentity:\n  store: sqlite://x.db\n  match_threshold: 5\n  review_threshold: 9\n",
    );
    insta::assert_snapshot!(err);
}

const WITH_IDENTITY: &str =
    "server:\n  listen: 127.0.0.1:0\nidentity:\n  store: sqlite://data/identity.db\n";

#[test]
fn sources_parse_with_their_policies() {
    let yaml = format!(
        "{WITH_IDENTITY}view:\n  default_timeout: 800ms\n  access:\n    marketing: [consents]\nsources:\n  - name: crm\n    kind: fake\n    config: {{system: crm, sections: [cases]}}\n    timeout: 250ms\n    cache: {{ttl: 30s, sections: {{cases: 5s}}}}\n    hedge: {{percentile: 0.9}}\n"
    );
    let config = Config::parse(&yaml, Path::new("t.yaml")).unwrap();
    let policy = config.sources[0].policy();
    assert_eq!(policy.timeout, Duration::from_millis(250));
    assert_eq!(policy.ttl, Duration::from_secs(30));
    assert_eq!(policy.section_ttl["cases"], Duration::from_secs(5));
    assert!((policy.hedge.percentile - 0.9).abs() < f64::EPSILON);
    assert_eq!(policy.retry.max_attempts, 2, "defaults fill the rest");
    assert_eq!(
        config.view.policy().default_timeout,
        Duration::from_millis(800)
    );
}

#[test]
fn an_unknown_adapter_kind_lists_the_known_ones() {
    let err = error_of(&format!(
        "{WITH_IDENTITY}sources:\n  - name: ehr\n    kind: fihr\n"
    ));
    insta::assert_snapshot!(err);
}

#[test]
fn an_adapter_config_error_names_the_field_inside_it() {
    let err = error_of(&format!(
        "{WITH_IDENTITY}sources:\n  - name: crm\n    kind: fake\n    config: {{system: crm, sections: [cases], latency: soon}}\n"
    ));
    insta::assert_snapshot!(err);
}

#[test]
fn source_rules_are_checked() {
    let source = "  - name: crm\n    kind: fake\n    config: {system: crm, sections: [cases]}\n";
    assert_eq!(
        error_of(&format!(
            "server:\n  listen: 127.0.0.1:0\nsources:\n{source}"
        )),
        "tessera.yaml: sources: need the identity section: views are per master"
    );
    assert_eq!(
        error_of(&format!("{WITH_IDENTITY}sources:\n{source}{source}")),
        "tessera.yaml: sources[1].name: is used by another source"
    );
    assert_eq!(
        error_of(&format!(
            "{WITH_IDENTITY}sources:\n  - name: CRM\n    kind: fake\n"
        )),
        "tessera.yaml: sources[0].name: must be lowercase letters, digits, `-` and `_`, starting with a letter"
    );
    assert_eq!(
        error_of(&format!(
            "{WITH_IDENTITY}view:\n  access:\n    spying: [cases]\n"
        )),
        "tessera.yaml: view.access.spying: is not a purpose of use"
    );
    assert_eq!(
        error_of(&format!(
            "{WITH_IDENTITY}sources:\n  - name: crm\n    kind: fake\n    config: {{system: crm, sections: [cases]}}\n    hedge: {{budget_ratio: 2}}\n"
        )),
        "tessera.yaml: sources[0].hedge.budget_ratio: must be between 0 and 1"
    );
}

#[test]
fn server_security_defaults_are_plaintext_loopback_without_reflection() {
    let config = Config::parse("server:\n  listen: 127.0.0.1:0\n", Path::new("t.yaml")).unwrap();
    assert!(config.server.tls.is_none());
    assert!(!config.server.insecure);
    assert!(!config.server.reflection);
}

#[test]
fn tls_paths_are_relative_to_the_config_file() {
    let yaml = "server:\n  listen: 0.0.0.0:0\n  tls:\n    cert: certs/server.pem\n    key: certs/server.key\n    client_ca: /etc/ca.pem\naudit:\n  file: audit.jsonl\n";
    let config = Config::parse(yaml, Path::new("/srv/tessera/tessera.yaml")).unwrap();
    let options = config
        .server
        .tls
        .as_ref()
        .unwrap()
        .options(Path::new("/srv/tessera/tessera.yaml"));
    assert_eq!(
        options.files.cert,
        Path::new("/srv/tessera/certs/server.pem")
    );
    assert_eq!(
        options.files.key,
        Path::new("/srv/tessera/certs/server.key")
    );
    assert_eq!(
        options.files.client_ca.as_deref(),
        Some(Path::new("/etc/ca.pem"))
    );
    assert_eq!(options.reload_interval, Duration::from_secs(5));
}

#[test]
fn plaintext_on_a_non_loopback_address_is_refused_unless_insecure() {
    assert_eq!(
        error_of("server:\n  listen: 0.0.0.0:50051\n"),
        "tessera.yaml: server.listen: refusing a plaintext listener on non-loopback address \
         0.0.0.0:50051: configure tls, or allow insecure explicitly"
    );
    let config = Config::parse(
        "server:\n  listen: 0.0.0.0:50051\n  insecure: true\naudit:\n  file: audit.jsonl\n",
        Path::new("t.yaml"),
    )
    .unwrap();
    assert!(config.server.insecure);
}

#[test]
fn a_non_loopback_listener_needs_an_audit_trail_and_no_anonymous_grant() {
    let tls = "server:\n  listen: 0.0.0.0:50051\n  tls: {cert: s.pem, key: s.key}\n";
    assert_eq!(
        error_of(tls),
        "tessera.yaml: audit: is required on a listener that is not loopback: calls that \
         touch patient data are recorded"
    );
    assert_eq!(
        error_of(&format!("{tls}audit: {{}}\n")),
        "tessera.yaml: audit: needs exactly one of `file` and `postgres`"
    );
    let anonymous = format!(
        "{tls}audit: {{file: a.jsonl}}\npolicy:\n  anonymous_loopback: {{roles: [reader], purposes: [TREAT]}}\n"
    );
    assert!(
        error_of(&anonymous).starts_with("tessera.yaml: policy.anonymous_loopback"),
        "{}",
        error_of(&anonymous)
    );
    Config::parse(
        &format!("{tls}audit: {{file: a.jsonl}}\n"),
        Path::new("t.yaml"),
    )
    .unwrap();
}

#[test]
fn record_limits_default_and_are_bounded() {
    let base = "server:\n  listen: 127.0.0.1:0\nidentity:\n  store: sqlite://i.db\n";
    let config = Config::parse(base, Path::new("t.yaml")).unwrap();
    assert_eq!(
        config.identity.unwrap().limits,
        tessera_matching::RecordLimits::default()
    );
    let config = Config::parse(
        &format!("{base}  limits: {{emails: 3, value_bytes: 128}}\n"),
        Path::new("t.yaml"),
    )
    .unwrap();
    let limits = config.identity.unwrap().limits;
    assert_eq!(
        (limits.emails, limits.value_bytes, limits.phones),
        (3, 128, 10)
    );
    assert_eq!(
        error_of(&format!("{base}  limits: {{emails: 0}}\n")),
        "tessera.yaml: identity.limits.emails: must be from 1 to 100"
    );
    assert_eq!(
        error_of(&format!("{base}  limits: {{value_bytes: 100000}}\n")),
        "tessera.yaml: identity.limits.value_bytes: must be from 1 to 4096"
    );
    assert!(error_of(&format!("{base}  limits: {{mails: 3}}\n")).contains("mails"));
}

#[test]
fn policy_and_page_key_mistakes_name_their_field() {
    let base = "server:\n  listen: 127.0.0.1:0\n";
    let message = error_of(&format!(
        "{base}policy:\n  callers:\n    - id: ui\n      match: {{san: spiffe://x/ui}}\n      roles: [reader]\n      purposes: [TREET]\n"
    ));
    assert!(
        message.starts_with("tessera.yaml: policy.callers[0].purposes[0]"),
        "{message}"
    );
    let message = error_of(&format!(
        "{base}auth:\n  page_token_keys:\n    - {{id: a, key: env:K1}}\n    - {{id: a, key: env:K2}}\n"
    ));
    assert_eq!(
        message,
        "tessera.yaml: auth.page_token_keys[1].id: is used by another key"
    );
}

#[test]
fn a_zero_reload_interval_is_rejected() {
    let message = error_of(
        "server:\n  listen: 127.0.0.1:0\n  tls:\n    cert: a.pem\n    key: a.key\n    reload_interval: 0s\n",
    );
    assert!(
        message
            .starts_with("tessera.yaml:6:22: server.tls.reload_interval: \"0s\" is out of range"),
        "{message}"
    );
}

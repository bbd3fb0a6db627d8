//! The `tessera` configuration file: YAML parsed into serde types that reject
//! unknown keys, with every constraint checked while parsing so that each error
//! names the file, the line and the field.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

mod security;
mod sources;

pub use security::{AuditConfig, AuthConfig, PageKeyConfig};
pub use sources::{
    BreakerConfig, CacheConfig, HedgeConfig, RetryConfig, SourceConfig, Span, ViewConfig,
};

/// The longest shutdown grace period the config accepts.
const MAX_GRACE_PERIOD: Duration = Duration::from_secs(3600);

/// The longest TLS reload interval the config accepts.
const MAX_RELOAD_INTERVAL: Duration = Duration::from_secs(3600);

/// Tessera's configuration file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Tessera configuration")]
pub struct Config {
    /// The gRPC server: where it listens and how it shuts down.
    pub server: ServerConfig,

    /// Log output. Logs carry fixed messages and structured fields, never patient data.
    #[serde(default)]
    pub logging: LoggingConfig,

    /// Traces and metrics: OTLP export, sampling, the Prometheus endpoint. The
    /// standard `OTEL_*` environment variables, when set, take precedence.
    #[serde(default)]
    pub telemetry: TelemetryConfig,

    /// The identity resolver behind IdentityService. Without this section,
    /// IdentityService answers UNIMPLEMENTED.
    #[serde(default)]
    pub identity: Option<IdentityConfig>,

    /// The patient view: deadlines, cache bound and which sections each purpose
    /// of use may see.
    #[serde(default)]
    pub view: ViewConfig,

    /// The silos behind PatientViewService, each through an adapter. Needs the
    /// `identity` section (views are assembled per master). Without sources,
    /// PatientViewService answers UNIMPLEMENTED.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,

    /// Who may call, deny by default: the callers (matched by client certificate SAN,
    /// token subject or client ID) with their roles, purposes of use, sections and
    /// identifier systems; `anonymous_loopback` grants callers without credentials a role,
    /// on a loopback listener only. A caller no entry names is refused.
    #[serde(default)]
    pub policy: tessera_auth::PolicyConfig,

    /// Bearer tokens (JWT) and the page-token signing keys.
    #[serde(default)]
    pub auth: AuthConfig,

    /// The patient's consent: a source of opt-outs (and opt-ins) per purpose and section,
    /// asked once per view before fetching; consent-gated sections it withholds, or that
    /// it cannot answer for in time, are not fetched (fail closed). See docs/consent.md.
    #[serde(default)]
    pub consent: Option<tessera_consent::ConsentConfig>,

    /// The audit trail. Required unless the listener is loopback.
    #[serde(default)]
    pub audit: Option<AuditConfig>,

    /// Demo conveniences for the embedded quickstart; leave out in production.
    #[serde(default)]
    pub quickstart: QuickstartConfig,
}

/// Demo conveniences for the embedded quickstart.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuickstartConfig {
    /// Generate a synthetic population's four silos (`tessera synth --silos`)
    /// on start when the directory holds none yet.
    #[serde(default)]
    pub generate_silos: Option<GenerateSilos>,
}

/// Where and how big the generated silos are.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateSilos {
    /// The directory (relative to this config file): `ehr/` NDJSON files and
    /// `billing.db`, `crm.db`, `marketing.db`.
    pub dir: PathBuf,
    /// How many people.
    #[serde(default = "GenerateSilos::default_people")]
    pub people: usize,
    /// The population's seed.
    #[serde(default = "GenerateSilos::default_seed")]
    pub seed: u64,
}

impl GenerateSilos {
    fn default_people() -> usize {
        2_000
    }

    fn default_seed() -> u64 {
        1
    }
}

/// The identity resolver: its store, its model and its decision thresholds.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The identity store: `sqlite://PATH` (embedded, the default; a relative PATH
    /// is relative to this config file; the file is created if missing) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`.
    #[schemars(with = "String", example = &"sqlite://data/identity.db")]
    pub store: StoreUrl,

    /// A model file written by `tessera resolver train`. Without it, the built-in
    /// model is used. A relative path is relative to this config file.
    #[serde(default)]
    pub model: Option<PathBuf>,

    /// Score, in bits, at or above which a record is linked automatically
    /// (MATCH). Defaults to the matcher's built-in threshold.
    #[serde(default)]
    pub match_threshold: Option<f64>,

    /// Score, in bits, at or above which a record goes to review
    /// (POSSIBLE_MATCH); below it a record gets a master of its own. Defaults to
    /// the matcher's built-in threshold; must not exceed `match_threshold`.
    #[serde(default)]
    pub review_threshold: Option<f64>,

    /// Source systems by trust, most trusted first, for golden-record
    /// survivorship (for example `[ehr, billing, crm, marketing]`). Unlisted
    /// systems rank last; ties go to the most recently updated value.
    #[serde(default)]
    pub source_priority: Vec<String>,

    /// Source systems that hold each person at most once (a registry
    /// deduplicated at the source). A batch link (`load_from_sources`, or
    /// `tessera resolver link-batch --deduplicated-source`) never links two
    /// records of one such system and puts at most one of them in a master.
    /// Records matched one at a time (the IdentityService) are not held to it.
    #[serde(default)]
    pub deduplicated_sources: Vec<String>,

    /// When the store holds no records yet, load it at start from every source
    /// that has an identity feed (batch-linked, as `tessera resolver
    /// link-batch` does); a store that holds records is never reloaded.
    #[serde(default)]
    pub load_from_sources: bool,

    /// How much one record may hold (given names, earlier family names, addresses,
    /// lines per address, phones, emails: values each; `value_bytes`: bytes of any one
    /// value). A record over a limit is refused INVALID_ARGUMENT, naming the field.
    /// Defaults: 8, 8, 10, 4, 10, 10 and 256.
    #[serde(default)]
    pub limits: tessera_matching::RecordLimits,
}

/// A database URL. It may hold a password, so `Debug` shows only its scheme.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(pub String);

impl<'de> Deserialize<'de> for StoreUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = StoreUrl;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sqlite:// or postgres:// URL")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                // The message never repeats the value: it may hold a password.
                let known = ["sqlite://", "postgres://", "postgresql://"];
                if known.iter().any(|p| v.starts_with(p) && v.len() > p.len()) {
                    Ok(StoreUrl(v.to_owned()))
                } else {
                    Err(E::custom("must be a sqlite://PATH or postgres:// URL"))
                }
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.split_once("://").map_or("?", |(s, _)| s);
        write!(f, "{scheme}://***")
    }
}

/// The gRPC server.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on, as `IP:PORT` (for example `127.0.0.1:50051`). Port 0
    /// lets the OS choose; the bound address is printed on standard output.
    /// `tessera serve --listen` overrides it.
    pub listen: SocketAddr,

    /// After SIGTERM or Ctrl-C, how long in-flight calls may run before they are cut
    /// off. Health turns NOT_SERVING and new calls are refused at once. A duration
    /// with a unit, such as `30s` or `2m`; at most one hour.
    #[serde(default = "ServerConfig::default_grace_period")]
    #[schemars(with = "String", example = &"30s")]
    pub shutdown_grace_period: GracePeriod,

    /// TLS on the gRPC listener (rustls), with mutual TLS when `client_ca` is set.
    /// Without it the listener is plaintext, which is refused on any address but
    /// loopback unless `insecure` is true.
    #[serde(default)]
    pub tls: Option<TlsConfig>,

    /// Allows a plaintext listener on a non-loopback address. Anyone who can reach
    /// the port then reads unencrypted patient data: for closed test networks only.
    /// Start-up logs a loud warning when it is used.
    #[serde(default)]
    pub insecure: bool,

    /// Serves gRPC server reflection (v1 and v1alpha), which tools such as grpcurl
    /// use to discover the services. Off unless enabled.
    #[serde(default)]
    pub reflection: bool,
}

impl ServerConfig {
    fn default_grace_period() -> GracePeriod {
        GracePeriod(Duration::from_secs(30))
    }
}

/// The gRPC listener's TLS files. Relative paths are relative to this config file.
/// The files are checked for changes and reloaded without a restart: new
/// connections get the new files, open ones are untouched.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server certificate chain (PEM), leaf first.
    pub cert: PathBuf,

    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,

    /// A CA bundle (PEM) for client certificates. When set, every client must
    /// present a certificate that chains to it (mutual TLS), and the caller is
    /// taken from the certificate's subject alternative names.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,

    /// How often the files are checked for changes: a duration with a unit, such
    /// as `5s`; between one second and one hour.
    #[serde(default = "TlsConfig::default_reload_interval")]
    #[schemars(with = "String", example = &"5s")]
    pub reload_interval: ReloadInterval,
}

impl TlsConfig {
    fn default_reload_interval() -> ReloadInterval {
        ReloadInterval(Duration::from_secs(5))
    }

    /// The acceptor's options, with paths resolved from the config file at
    /// `config_path`.
    pub fn options(&self, config_path: &Path) -> tessera_tls::ServerTlsOptions {
        let resolve = |p: &Path| Config::resolve_path(config_path, p);
        let mut options = tessera_tls::ServerTlsOptions::new(tessera_tls::ServerTlsFiles {
            cert: resolve(&self.cert),
            key: resolve(&self.key),
            client_ca: self.client_ca.as_deref().map(resolve),
        });
        options.reload_interval = self.reload_interval.0;
        options
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// `text` for people reading a terminal, `json` for log pipelines (one object
    /// per line).
    pub format: LogFormat,

    /// Which events to log, in `tracing` filter syntax (`info`,
    /// `warn,tessera_gateway=debug`). The `RUST_LOG` environment variable, when set,
    /// takes precedence.
    #[schemars(with = "String")]
    pub level: LogFilter,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: LogFilter("info".to_owned()),
        }
    }
}

/// Traces and metrics. Telemetry carries no patient data: span names are
/// fixed, attributes name sources, sections and outcomes, URLs lose their query
/// and patient path segments, and metric labels come from small fixed sets.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `service.name` of the traces and metrics (`OTEL_SERVICE_NAME` wins).
    pub service_name: String,

    /// Where traces and metrics are sent over OTLP/gRPC, such as
    /// `http://otel-collector:4317`. `OTEL_EXPORTER_OTLP_ENDPOINT` (or the
    /// per-signal `..._TRACES_ENDPOINT` / `..._METRICS_ENDPOINT`) wins. Without
    /// either, nothing is exported over OTLP and no spans are recorded.
    pub otlp_endpoint: Option<String>,

    /// How long one OTLP export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, in
    /// milliseconds, wins).
    #[schemars(with = "String", example = &"10s")]
    pub otlp_timeout: Span,

    /// How often metrics are pushed over OTLP (`OTEL_METRIC_EXPORT_INTERVAL`,
    /// in milliseconds, wins).
    #[schemars(with = "String", example = &"60s")]
    pub metrics_interval: Span,

    /// The share of new traces kept, 0.0 to 1.0, parent-based: a call whose
    /// caller sampled it (its `traceparent`) is kept, one whose caller did not is
    /// not. `OTEL_TRACES_SAMPLER_ARG` wins.
    pub sampling_ratio: f64,

    /// Views that fail or take at least this long are kept even when the ratio
    /// drops their trace: their server span is exported (tail decision
    /// in-process; the child spans of an unsampled trace are not recorded — a
    /// collector's tail sampling keeps whole traces).
    #[schemars(with = "String", example = &"500ms")]
    pub keep_slower_than: Span,

    /// Record master IDs as span attributes (`tessera.master_id`). Only when
    /// master IDs are opaque and not identifying in your organisation.
    pub record_master_ids: bool,

    /// Serve Prometheus metrics over HTTP at `/metrics` on this address, such as
    /// `0.0.0.0:9464`. Without it there is no scrape endpoint.
    #[schemars(with = "Option<String>", example = &"0.0.0.0:9464")]
    pub prometheus_listen: Option<SocketAddr>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            service_name: "tessera".to_owned(),
            otlp_endpoint: None,
            otlp_timeout: Span(Duration::from_secs(10)),
            metrics_interval: Span(Duration::from_secs(60)),
            sampling_ratio: 0.1,
            keep_slower_than: Span(Duration::from_millis(500)),
            record_master_ids: false,
            prometheus_listen: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A shutdown grace period: a duration with a unit, such as `30s`, at most one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracePeriod(pub Duration);

/// How often TLS files are checked for changes, between one second and one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadInterval(pub Duration);

/// A `tracing` filter directive, checked when the config is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter(pub String);

// Constraints are checked inside the visitors: serde_yaml attaches the value's own
// line and column only to errors raised while the value is being read.

impl<'de> Deserialize<'de> for GracePeriod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = GracePeriod;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as \"30s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let duration = humantime::parse_duration(v)
                    .map_err(|e| E::custom(format!("invalid duration {v:?}: {e}")))?;
                if duration > MAX_GRACE_PERIOD {
                    return Err(E::custom(format!(
                        "{v:?} is too long: at most {}",
                        humantime::format_duration(MAX_GRACE_PERIOD)
                    )));
                }
                Ok(GracePeriod(duration))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl<'de> Deserialize<'de> for ReloadInterval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ReloadInterval;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as \"5s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let duration = humantime::parse_duration(v)
                    .map_err(|e| E::custom(format!("invalid duration {v:?}: {e}")))?;
                if !(Duration::from_secs(1)..=MAX_RELOAD_INTERVAL).contains(&duration) {
                    return Err(E::custom(format!(
                        "{v:?} is out of range: between 1s and {}",
                        humantime::format_duration(MAX_RELOAD_INTERVAL)
                    )));
                }
                Ok(ReloadInterval(duration))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl<'de> Deserialize<'de> for LogFilter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = LogFilter;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a log filter, such as \"info\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                tracing_subscriber::EnvFilter::builder()
                    .parse(v)
                    .map_err(|e| E::custom(format!("invalid log filter: {e}")))?;
                Ok(LogFilter(v.to_owned()))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Fields that are valid alone but not together.
    #[error("{path}: {field}: {message}")]
    Rule {
        /// The file.
        path: PathBuf,
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The file is not valid YAML, or does not fit the schema.
    #[error("{path}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// 1-based column of the offending value.
        column: usize,
        /// Dotted path of the field (`server.listen`), or `.` for the document.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let mut field = match err.path().to_string() {
                p if p == "." || p.is_empty() => String::new(),
                p => p,
            };
            let inner = err.into_inner();
            let (line, column) = inner.location().map_or((1, 1), |l| (l.line(), l.column()));
            let message = bare_message(&inner.to_string());
            // serde reports a missing field against its parent; name the field itself.
            if let Some(missing) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(missing);
            }
            if field.is_empty() {
                field.push('.');
            }
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                field,
                message,
            }
        })?;
        config.check_rules(path)?;
        Ok(config)
    }

    fn check_rules(&self, path: &Path) -> Result<(), ConfigError> {
        let rule = |field: &str, message: &str| ConfigError::Rule {
            path: path.to_owned(),
            field: field.to_owned(),
            message: message.to_owned(),
        };
        if let Err(err) = tessera_tls::check_listener(
            self.server.listen,
            self.server.tls.is_some(),
            self.server.insecure,
        ) {
            return Err(rule("server.listen", &err.to_string()));
        }
        self.check_security(&rule)?;
        if let Some(identity) = &self.identity {
            if let (Some(review), Some(auto)) =
                (identity.review_threshold, identity.match_threshold)
                && review > auto
            {
                return Err(rule(
                    "identity.review_threshold",
                    "must not exceed identity.match_threshold",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            if !identity.source_priority.iter().all(|s| seen.insert(s)) {
                return Err(rule("identity.source_priority", "lists a system twice"));
            }
            // A zero limit refuses every record holding one such value; far above the
            // defaults, the limit no longer bounds the matcher's work.
            for (name, value) in identity.limits.named() {
                let most = if name == "value_bytes" { 4096 } else { 100 };
                if !(1..=most).contains(&value) {
                    return Err(rule(
                        &format!("identity.limits.{name}"),
                        &format!("must be from 1 to {most}"),
                    ));
                }
            }
        }
        if !(0.0..=1.0).contains(&self.telemetry.sampling_ratio) {
            return Err(rule(
                "telemetry.sampling_ratio",
                "must be between 0.0 and 1.0",
            ));
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(rule(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        self.check_view(&rule)
    }

    /// The `policy`, `auth` and `audit` rules, for the configured listen address
    /// (`serve --listen` checks its own address again).
    fn check_security(&self, rule: &dyn Fn(&str, &str) -> ConfigError) -> Result<(), ConfigError> {
        let auth_rule = |prefix: &str, err: tessera_auth::AuthError| match err {
            tessera_auth::AuthError::InvalidConfig { field, problem } => {
                rule(&format!("{prefix}.{field}"), problem)
            }
            other => rule(prefix, &other.to_string()),
        };
        self.policy.validate().map_err(|e| auth_rule("policy", e))?;
        self.policy
            .validate_for_listener(self.server.listen)
            .map_err(|e| auth_rule("policy", e))?;
        if let Some(jwt) = &self.auth.jwt {
            jwt.validate().map_err(|e| auth_rule("auth", e))?;
        }
        let keys = &self.auth.page_token_keys;
        if keys.len() > 2 {
            return Err(rule(
                "auth.page_token_keys",
                "holds at most two keys: the signing key and the previous one",
            ));
        }
        for (i, key) in keys.iter().enumerate() {
            if key.id.trim().is_empty() || key.id.len() > 64 {
                return Err(rule(
                    &format!("auth.page_token_keys[{i}].id"),
                    "must be 1 to 64 characters",
                ));
            }
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(rule(
                    &format!("auth.page_token_keys[{i}].id"),
                    "is used by another key",
                ));
            }
        }
        if let Some(consent) = &self.consent {
            consent
                .validate()
                .map_err(|e| rule("consent", &e.to_string()))?;
        }
        match &self.audit {
            Some(audit) if audit.file.is_some() == audit.postgres.is_some() => {
                Err(rule("audit", "needs exactly one of `file` and `postgres`"))
            }
            None if !self.server.listen.ip().to_canonical().is_loopback() => Err(rule(
                "audit",
                "is required on a listener that is not loopback: calls that touch \
                 patient data are recorded",
            )),
            _ => Ok(()),
        }
    }

    fn check_view(&self, rule: &dyn Fn(&str, &str) -> ConfigError) -> Result<(), ConfigError> {
        if let Err(purpose) = self.view.access_policy() {
            return Err(rule(
                &format!("view.access.{purpose}"),
                "is not a purpose of use",
            ));
        }
        if !self.sources.is_empty() && self.identity.is_none() {
            return Err(rule(
                "sources",
                "need the identity section: views are per master",
            ));
        }
        let registry = crate::adapters::registry();
        let mut names = std::collections::HashSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            if let Err((field, message)) = source.check() {
                return Err(rule(&format!("sources[{i}].{field}"), &message));
            }
            if !names.insert(&source.name) {
                return Err(rule(
                    &format!("sources[{i}].name"),
                    "is used by another source",
                ));
            }
            let config = if source.config.is_null() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                source.config.clone()
            };
            match registry.check(&source.kind, &config) {
                Ok(()) => {}
                Err(tessera_adapter_core::BuildError::Config { path, message }) => {
                    let field = match path.as_str() {
                        "." | "" => format!("sources[{i}].config"),
                        path => format!("sources[{i}].config.{path}"),
                    };
                    return Err(rule(&field, &message));
                }
                Err(e @ tessera_adapter_core::BuildError::UnknownKind { .. }) => {
                    return Err(rule(&format!("sources[{i}].kind"), &e.to_string()));
                }
                Err(e) => return Err(rule(&format!("sources[{i}].config"), &e.to_string())),
            }
        }
        Ok(())
    }

    /// Resolves a path from this config file: relative paths are relative to the
    /// file's directory.
    pub fn resolve_path(config_path: &Path, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            config_path.parent().unwrap_or(Path::new(".")).join(path)
        }
    }

    /// The JSON Schema of the configuration file, pretty-printed.
    pub fn json_schema() -> String {
        let mut schema = serde_json::to_value(schemars::schema_for!(Config))
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
        // Each adapter kind's own config, under `x-adapter-kinds.<kind>`.
        let registry = crate::adapters::registry();
        let kinds: serde_json::Map<String, serde_json::Value> = registry
            .kinds()
            .into_iter()
            .filter_map(|kind| {
                let factory = registry.factory(kind).ok()?;
                let schema = serde_json::to_value(factory.config_schema()).ok()?;
                Some((kind.to_owned(), schema))
            })
            .collect();
        if let Some(object) = schema.as_object_mut() {
            object.insert("x-adapter-kinds".to_owned(), kinds.into());
        }
        serde_json::to_string_pretty(&schema).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// serde_yaml wraps its messages as "PATH: MESSAGE at line L column C"; the
/// error already carries the field and the location in fields of its own.
fn bare_message(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    match message.split_once(": ") {
        Some((prefix, rest))
            if !prefix.is_empty()
                && !prefix.contains(|c: char| c.is_whitespace() || "`\"'".contains(c)) =>
        {
            rest.to_owned()
        }
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests;

//! Adapter kinds as typed factories in an explicit registry.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::{Adapter, BuildError, HealthCheck};

/// What a factory knows about the adapter instance it builds.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The instance's name in Tessera's config (`ehr`, `billing`).
    pub name: String,
    /// The directory relative file paths in the config are resolved against.
    pub base_dir: PathBuf,
}

impl BuildContext {
    /// `path` resolved against the config's directory.
    pub fn resolve_path(&self, path: &std::path::Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }
}

/// A built adapter and, separately, its health check.
#[derive(Clone)]
pub struct BuiltAdapter {
    /// The adapter.
    pub adapter: Arc<dyn Adapter>,
    /// Its health check.
    pub health: Arc<dyn HealthCheck>,
}

impl fmt::Debug for BuiltAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltAdapter")
            .field("system", &self.adapter.describe().system)
            .finish_non_exhaustive()
    }
}

/// One kind of adapter: its typed configuration and how to build it.
#[async_trait]
pub trait AdapterKind: Send + Sync + 'static {
    /// The kind's configuration; every field documented (it becomes the JSON
    /// Schema), unknown fields denied.
    type Config: DeserializeOwned + JsonSchema + Send + 'static;

    /// The kind's name in config files (`fhir`, `sql`, `fake`).
    fn kind(&self) -> &'static str;

    /// Checks what can be checked without I/O.
    fn validate(&self, config: &Self::Config) -> Result<(), BuildError> {
        let _ = config;
        Ok(())
    }

    /// Builds an instance: connection pools, clients, file indexes.
    async fn build(
        &self,
        context: &BuildContext,
        config: Self::Config,
    ) -> Result<BuiltAdapter, BuildError>;
}

/// A kind with its configuration erased to JSON, as the registry holds it.
#[async_trait]
pub trait AdapterFactory: Send + Sync + 'static {
    /// The kind's name.
    fn kind(&self) -> &'static str;
    /// The JSON Schema of the kind's configuration.
    fn config_schema(&self) -> schemars::Schema;
    /// Parses and validates a configuration without I/O.
    fn check(&self, config: &serde_json::Value) -> Result<(), BuildError>;
    /// Parses, validates and builds.
    async fn build(
        &self,
        context: &BuildContext,
        config: serde_json::Value,
    ) -> Result<BuiltAdapter, BuildError>;
}

struct Typed<K>(K);

impl<K: AdapterKind> Typed<K> {
    fn parse(&self, config: &serde_json::Value) -> Result<K::Config, BuildError> {
        let parsed: K::Config = serde_path_to_error::deserialize(config).map_err(|e| {
            let path = e.path().to_string();
            BuildError::config(path, e.into_inner().to_string())
        })?;
        self.0.validate(&parsed)?;
        Ok(parsed)
    }
}

#[async_trait]
impl<K: AdapterKind> AdapterFactory for Typed<K> {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn config_schema(&self) -> schemars::Schema {
        schemars::schema_for!(K::Config)
    }

    fn check(&self, config: &serde_json::Value) -> Result<(), BuildError> {
        self.parse(config).map(drop)
    }

    async fn build(
        &self,
        context: &BuildContext,
        config: serde_json::Value,
    ) -> Result<BuiltAdapter, BuildError> {
        let parsed = self.parse(&config)?;
        self.0.build(context, parsed).await
    }
}

/// The adapter kinds a Tessera binary knows, by name.
#[derive(Default)]
pub struct Registry {
    factories: BTreeMap<&'static str, Box<dyn AdapterFactory>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind; a later kind of the same name replaces an earlier one.
    #[must_use]
    pub fn with<K: AdapterKind>(mut self, kind: K) -> Self {
        self.factories.insert(kind.kind(), Box::new(Typed(kind)));
        self
    }

    /// The registered kinds' names, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    /// The factory for `kind`, or an error listing the known kinds.
    pub fn factory(&self, kind: &str) -> Result<&dyn AdapterFactory, BuildError> {
        self.factories
            .get(kind)
            .map(|f| &**f)
            .ok_or_else(|| BuildError::UnknownKind {
                kind: kind.to_owned(),
                known: self.kinds().into_iter().map(str::to_owned).collect(),
            })
    }

    /// Parses and validates an instance's configuration without I/O.
    pub fn check(&self, kind: &str, config: &serde_json::Value) -> Result<(), BuildError> {
        self.factory(kind)?.check(config)
    }

    /// Builds an instance of `kind`.
    pub async fn build(
        &self,
        kind: &str,
        context: &BuildContext,
        config: serde_json::Value,
    ) -> Result<BuiltAdapter, BuildError> {
        self.factory(kind)?.build(context, config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeKind;

    #[test]
    fn an_unknown_kind_lists_the_known_ones() {
        let registry = Registry::new().with(FakeKind);
        let err = registry.check("fihr", &serde_json::json!({})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown adapter kind \"fihr\"; known kinds: fake"
        );
    }

    #[test]
    fn config_errors_name_the_field() {
        let registry = Registry::new().with(FakeKind);
        let err = registry
            .check(
                "fake",
                &serde_json::json!({"system": "crm", "sections": ["cases"], "latency": "fast"}),
            )
            .unwrap_err();
        assert!(err.to_string().starts_with("latency: "), "{err}");
        let err = registry
            .check(
                "fake",
                &serde_json::json!({"system": "crm", "sections": ["cases"], "colour": 1}),
            )
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        let err = registry
            .check(
                "fake",
                &serde_json::json!({"system": "crm", "sections": ["Bad Name"]}),
            )
            .unwrap_err();
        assert!(err.to_string().starts_with("sections: "), "{err}");
    }
}

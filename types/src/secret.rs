//! [`Secret`]: a secret in configuration, hidden from `Debug` and `Display`, read
//! only through [`Secret::expose`], and optionally a reference (`env:NAME`,
//! `file:PATH`) that [`Secret::resolve`] replaces by the value it names.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};

use crate::SecretError;

/// A secret from configuration: a token, key or password.
///
/// It deserializes from a string. A string `env:NAME` is a reference to the
/// environment variable `NAME`, and `file:PATH` to a file (a mounted Kubernetes
/// secret), its trailing newline trimmed; anything else is the secret itself.
/// The older spellings `{env: NAME}` and `{file: PATH}` mean the same references.
/// Deserializing does no I/O: [`Secret::resolve`] (or [`Secret::resolve_in`])
/// reads what a reference names, and its errors name the variable or path,
/// never the value. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// What a secret's configured text refers to.
enum Source<'a> {
    Value(&'a str),
    Env(&'a str),
    File(&'a str),
}

impl Secret {
    /// A secret from its configured text: a value starting with `env:` or
    /// `file:` is a reference, as in configuration.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it. For a reference not
    /// yet resolved this is the reference text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether this is an `env:` or `file:` reference still to resolve.
    pub fn is_reference(&self) -> bool {
        !matches!(self.source(), Source::Value(_))
    }

    /// The secret with its reference read: the environment variable's value, or
    /// the file's content without its trailing newline (relative paths are
    /// relative to the working directory). A plain value is returned as is.
    pub fn resolve(&self) -> Result<Self, SecretError> {
        self.resolve_in(Path::new(""))
    }

    /// As [`Secret::resolve`], with relative file paths resolved against
    /// `base_dir` (the configuration file's directory).
    pub fn resolve_in(&self, base_dir: &Path) -> Result<Self, SecretError> {
        let (value, reference) = match self.source() {
            Source::Value(value) => return Ok(Self::new(value)),
            Source::Env(name) => {
                let value = std::env::var(name).map_err(|_| SecretError::EnvNotSet {
                    name: name.to_owned(),
                })?;
                (value, format!("environment variable {name}"))
            }
            Source::File(path) => {
                let path = base_dir.join(path);
                let mut text = std::fs::read_to_string(&path).map_err(|e| SecretError::File {
                    path: path.clone(),
                    kind: e.kind(),
                })?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                (text, format!("file {}", path.display()))
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty { reference });
        }
        Ok(Self(value))
    }

    fn source(&self) -> Source<'_> {
        if let Some(name) = self.0.strip_prefix("env:") {
            Source::Env(name)
        } else if let Some(path) = self.0.strip_prefix("file:") {
            Source::File(path)
        } else {
            Source::Value(&self.0)
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The spellings a secret deserializes from.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // read by serde and schemars only
enum Repr {
    /// The secret, `env:NAME` (an environment variable) or `file:PATH` (a file,
    /// its trailing newline trimmed).
    Text(String),
    /// `{env: NAME}`: the environment variable NAME.
    Env {
        /// The environment variable's name.
        env: String,
    },
    /// `{file: PATH}`: the file at PATH, its trailing newline trimmed.
    File {
        /// The file's path.
        file: PathBuf,
    },
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Repr::deserialize(deserializer)? {
            Repr::Text(text) => Self(text),
            Repr::Env { env } => Self(format!("env:{env}")),
            Repr::File { file } => Self(format!("file:{}", file.display())),
        })
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        Repr::json_schema(generator)
    }
}

//! The adapter SDK's errors. Messages are lowercase and free of patient data.

use std::time::Duration;

use thiserror::Error;

/// Why a fetch (or one of its pairs) failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FetchError {
    /// The silo has no such local ID.
    #[error("no such record in the source")]
    NotFound,
    /// The silo could not be reached or failed; retrying may help.
    #[error("source unavailable: {message}")]
    Unavailable {
        /// What failed, without patient data (`HTTP 503 from upstream`).
        message: String,
        /// When a retry may succeed, if the silo said.
        retry_after: Option<Duration>,
    },
    /// The silo asked the adapter to slow down.
    #[error("source rate limited the adapter")]
    RateLimited {
        /// When a retry may succeed, if the silo said.
        retry_after: Option<Duration>,
    },
    /// The silo refused the adapter's credentials or scope.
    #[error("source denied access: {message}")]
    Denied {
        /// What was refused, without patient data.
        message: String,
    },
    /// The silo answered with data the adapter could not read.
    #[error("malformed data from source: {message}")]
    Malformed {
        /// What was malformed (a type and field, never a value).
        message: String,
    },
    /// The adapter does not serve this section.
    #[error("unknown section {section:?}")]
    UnknownSection {
        /// The section asked for (a configuration name, not patient data).
        section: String,
    },
    /// The deadline passed before the silo answered.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The adapter has no identity feed.
    #[error("the adapter has no identity feed")]
    FeedUnsupported,
}

/// The kind of a [`FetchError`], as the contract's `FetchErrorKind` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FetchErrorKind {
    /// [`FetchError::NotFound`].
    NotFound,
    /// [`FetchError::Unavailable`], [`FetchError::DeadlineExceeded`] and
    /// [`FetchError::FeedUnsupported`].
    Unavailable,
    /// [`FetchError::RateLimited`].
    RateLimited,
    /// [`FetchError::Denied`].
    Denied,
    /// [`FetchError::Malformed`].
    Malformed,
    /// [`FetchError::UnknownSection`].
    UnknownSection,
}

impl FetchError {
    /// A [`FetchError::Unavailable`] without a retry hint.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// The error's kind.
    pub fn kind(&self) -> FetchErrorKind {
        match self {
            Self::NotFound => FetchErrorKind::NotFound,
            Self::Unavailable { .. } | Self::DeadlineExceeded | Self::FeedUnsupported => {
                FetchErrorKind::Unavailable
            }
            Self::RateLimited { .. } => FetchErrorKind::RateLimited,
            Self::Denied { .. } => FetchErrorKind::Denied,
            Self::Malformed { .. } => FetchErrorKind::Malformed,
            Self::UnknownSection { .. } => FetchErrorKind::UnknownSection,
        }
    }

    /// Whether trying again may succeed: the silo was unavailable or rate
    /// limited (fetches are reads, so always idempotent).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::RateLimited { .. })
    }

    /// When the silo said a retry may succeed.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } | Self::RateLimited { retry_after } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// Why an adapter could not be built from its configuration.
#[derive(Debug, Error)]
pub enum BuildError {
    /// No factory is registered for the kind.
    #[error("unknown adapter kind {kind:?}; known kinds: {}", known.join(", "))]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The registered kinds.
        known: Vec<String>,
    },
    /// The kind's configuration did not parse or validate.
    #[error("{path}: {message}")]
    Config {
        /// Where in the adapter's config (`sections.invoices.query`), or `.`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The adapter could not be set up (a pool, a file, a client).
    #[error("cannot start adapter: {0}")]
    Setup(String),
}

impl BuildError {
    /// A configuration error at `path`.
    pub fn config(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}

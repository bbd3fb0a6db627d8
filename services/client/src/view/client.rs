//! Connecting to the gateway and calling PatientViewService under one deadline,
//! and the error `main` prints when a call fails.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use tessera_proto::v1::patient_view_service_client::PatientViewServiceClient;
use tessera_proto::v1::stream_patient_view_response::Event;
use tokio::time::Instant;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::{ViewArgs, json, render, table};

/// How long past the deadline the local timer waits, so that the gateway's own
/// answer to an expired deadline (with its details) arrives first.
const GRACE: Duration = Duration::from_millis(100);

/// Connects, calls GetPatientView or StreamPatientView, and prints the result.
pub(super) async fn view(args: &ViewArgs) -> anyhow::Result<()> {
    let deadline = Instant::now() + args.timeout;
    let channel = crate::connect::channel(&args.addr, &args.connect, args.timeout).await?;
    let mut client = PatientViewServiceClient::new(channel);
    let call = Call {
        deadline,
        timeout: args.timeout,
    };
    if args.stream {
        stream(&mut client, args, call).await
    } else {
        unary(&mut client, args, call).await
    }
}

/// The call's deadline, and the `--timeout` it came from (for messages).
#[derive(Debug, Clone, Copy)]
struct Call {
    deadline: Instant,
    timeout: Duration,
}

impl Call {
    /// A request carrying what is left of the deadline as its `grpc-timeout`.
    fn request<T>(self, message: T) -> Result<tonic::Request<T>, RpcError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RpcError::deadline(self.timeout));
        }
        let mut request = tonic::Request::new(message);
        request.set_timeout(left);
        Ok(request)
    }

    /// Awaits `future` until the deadline (plus [`GRACE`]).
    async fn bounded<T>(
        self,
        future: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, RpcError> {
        match tokio::time::timeout_at(self.deadline + GRACE, future).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(status)) => Err(self.error(&status)),
            Err(_) => Err(RpcError::deadline(self.timeout)),
        }
    }

    /// tonic reports its own expiry of the `grpc-timeout` as CANCELLED; that is a
    /// missed deadline.
    fn error(self, status: &Status) -> RpcError {
        if status.code() == Code::Cancelled && Instant::now() >= self.deadline {
            RpcError::deadline(self.timeout)
        } else {
            RpcError::from_status(status)
        }
    }
}

async fn unary(
    client: &mut PatientViewServiceClient<crate::connect::Connection>,
    args: &ViewArgs,
    call: Call,
) -> anyhow::Result<()> {
    let request = call.request(args.get_request()?)?;
    let view = call
        .bounded(client.get_patient_view(request))
        .await?
        .into_inner();
    let text = if args.json {
        serde_json::to_string_pretty(&json::view(&view))?
    } else {
        render::view(&view)
    };
    emit(&text)
}

async fn stream(
    client: &mut PatientViewServiceClient<crate::connect::Connection>,
    args: &ViewArgs,
    call: Call,
) -> anyhow::Result<()> {
    let request = call.request(args.stream_request()?)?;
    let mut messages = call
        .bounded(client.stream_patient_view(request))
        .await?
        .into_inner();
    let mut summarized = false;
    while let Some(message) = call.bounded(messages.message()).await? {
        summarized |= matches!(message.event, Some(Event::Summary(_)));
        let text = if args.json {
            serde_json::to_string(&json::stream_message(&message))?
        } else {
            render::stream_message(&message)
        };
        emit(&text)?;
    }
    if !summarized {
        bail!("the stream ended without its summary; the view may be incomplete");
    }
    Ok(())
}

/// Writes `text` and a newline to standard output and flushes, so each streamed
/// section shows as it arrives.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// A failed call, as printed: `CODE: message`, then the ErrorInfo reason and the
/// BadRequest field violations, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RpcError {
    code: Code,
    message: String,
    details: Vec<String>,
}

impl RpcError {
    pub(super) fn from_status(status: &Status) -> Self {
        let details = status.get_error_details();
        let mut lines = Vec::new();
        if let Some(info) = details.error_info() {
            lines.push(format!("reason: {} ({})", info.reason, info.domain));
        }
        if let Some(bad_request) = details.bad_request() {
            for violation in &bad_request.field_violations {
                lines.push(format!("{}: {}", violation.field, violation.description));
            }
        }
        Self {
            code: status.code(),
            message: status.message().to_owned(),
            details: lines,
        }
    }

    fn deadline(timeout: Duration) -> Self {
        Self {
            code: Code::DeadlineExceeded,
            message: format!(
                "no complete answer within the {} deadline (--timeout)",
                humantime::format_duration(timeout)
            ),
            details: Vec::new(),
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message and details come from the server: keep them to one line each.
        write!(
            f,
            "{}: {}",
            tessera_proto::error::grpc_code_name(self.code as i32),
            table::clean(&self.message)
        )?;
        for line in &self.details {
            write!(f, "\n  {}", table::clean(line))?;
        }
        Ok(())
    }
}

impl std::error::Error for RpcError {}

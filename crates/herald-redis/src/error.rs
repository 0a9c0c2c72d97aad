//! Redis errors mapped onto [`StateError`], by error kind and code, never by message text.

use herald_core::StateError;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Server error codes that mean "Redis cannot serve right now" rather than "the data is wrong".
const TRANSIENT_CODES: [&str; 7] = [
    "OOM",
    "BUSY",
    "MISCONF",
    "NOREPLICAS",
    "NOAUTH",
    "LOADING",
    "WRONGPASS",
];

pub(crate) fn map(e: RedisError) -> StateError {
    // A reply of an unexpected shape is a data problem, even though the client would reconnect.
    if matches!(e.kind(), ErrorKind::Parse | ErrorKind::UnexpectedReturnType) {
        return StateError::Data(e.to_string());
    }
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::AuthenticationFailed
                | ErrorKind::Client
                | ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                        | ServerErrorKind::NoPerm
                )
        )
        || e.code().is_some_and(|c| TRANSIENT_CODES.contains(&c));
    if unavailable {
        StateError::Unavailable(e.to_string())
    } else {
        StateError::Data(e.to_string())
    }
}

/// Bad data read back from Redis (a document or payload that does not parse).
pub(crate) fn data(what: &str, e: impl std::fmt::Display) -> StateError {
    StateError::Data(format!("{what}: {e}"))
}

//! Every error the API answers with, and its one mapping to an HTTP status
//! and an RFC 9457 `application/problem+json` body.

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// `Result` with this crate's [`ApiError`].
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// What went wrong with a request, grouped by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    // The client's fault.
    /// A query parameter is missing, unknown or malformed.
    #[error("query parameter '{param}': {problem}")]
    BadParam {
        param: &'static str,
        problem: String,
    },
    /// A query parameter the endpoint does not know (a typo, usually).
    #[error("unknown query parameter '{0}'")]
    UnknownParam(String),
    /// The body is not the JSON the endpoint expects, or a field in it is
    /// invalid (a bad name, a short password).
    #[error("{0}")]
    BadBody(String),
    /// The body is larger than the limit.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// No bearer token, or one that is unknown or expired.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Wrong name or password at login.
    #[error("wrong name or password")]
    BadCredentials,
    /// Not allowed on this server (sign-up turned off).
    #[error("{0}")]
    Forbidden(&'static str),
    /// Nothing here for this owner (it may exist for another owner: that
    /// is never revealed).
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The name is taken.
    #[error("{0}")]
    Conflict(String),
    /// Too many wrong passwords for this name: try again after the wait.
    #[error("too many failed logins for this name; try again in {retry_after_s} s")]
    TooManyLogins { retry_after_s: u64 },

    // Ours.
    /// A bound was reached (sessions, live feeds); try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The store, the log or the accounts file failed.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The one place an error becomes an HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParam { .. } | ApiError::UnknownParam(_) | ApiError::BadBody(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) | ApiError::BadCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyLogins { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn bad_param(param: &'static str, problem: impl Into<String>) -> ApiError {
        ApiError::BadParam {
            param,
            problem: problem.into(),
        }
    }

    /// Logs a server-side failure where it is handled (here) and hides its
    /// detail from the client, which can do nothing with it.
    pub(crate) fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, "{context}");
        ApiError::Internal(format!("{context} failed; the server log has the cause"))
    }
}

/// Maps an accounts error: the caller's mistakes to 4xx with the crate's
/// own message (it names the fault), storage failures to 500.
impl From<tributary_accounts::Error> for ApiError {
    fn from(error: tributary_accounts::Error) -> ApiError {
        use tributary_accounts::Error as E;
        match error {
            E::InvalidName { .. } | E::InvalidPassword(_) | E::UnknownGrant(_) | E::NoGrants => {
                ApiError::BadBody(error.to_string())
            }
            E::Exists { .. } => ApiError::Conflict(error.to_string()),
            E::NotFound { .. } => ApiError::NotFound(error.to_string()),
            E::Corrupt { .. } | E::Io { .. } => ApiError::internal("accounts", error),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::BodyTooLarge(crate::BODY_LIMIT);
        }
        ApiError::BadBody(rejection.body_text())
    }
}

/// The problem+json content type.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        let mut response = (status, body.to_string()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let ApiError::TooManyLogins { retry_after_s } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

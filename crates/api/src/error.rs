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
    /// The body is not declared as JSON (`Content-Type: application/json`).
    #[error("{0}")]
    UnsupportedMediaType(String),
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
    /// A per-source or per-owner bound (sign-ups, live feeds); with
    /// `Retry-After` when the wait is known.
    #[error("{detail}")]
    TooMany {
        detail: String,
        retry_after_s: Option<u64>,
    },

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
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) | ApiError::BadCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyLogins { .. } | ApiError::TooMany { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
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

/// The one answer to a sign-up whose name is taken, whoever holds it.
pub(crate) const NAME_NOT_AVAILABLE: &str = "name not available; choose another";

/// axum's JSON rejections as problems: 413 too large, 415 not declared as
/// JSON, 400 anything else (bad syntax, a missing or wrong field: the
/// detail names it).
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge(crate::BODY_LIMIT),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
                "the body must be JSON, sent with 'Content-Type: application/json'".into(),
            ),
            _ => ApiError::BadBody(rejection.body_text()),
        }
    }
}

/// The problem+json content type.
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem with `status` and `detail`.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// Middleware: an error answer that is not a problem yet (one of axum's
/// own rejections, such as a path or query string that is not UTF-8)
/// becomes one with the same status, its text as the detail, and its other
/// headers (`Allow`, `Retry-After`) kept.
pub(crate) async fn problems_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    // axum's rejection texts are one short line; more is not a message.
    let text = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    let detail =
        text.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase());
    let mut answer = problem(status, &detail);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().append(name, value.clone());
        }
    }
    answer
}

/// A handler that panicked: 500 as a problem (the panic is logged), not a
/// dropped connection.
pub(crate) fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("HTTP handler panicked");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the server failed; its log has the cause",
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = problem(status, &self.to_string());
        let retry_after_s = match self {
            ApiError::TooManyLogins { retry_after_s } => Some(retry_after_s),
            ApiError::TooMany { retry_after_s, .. } => retry_after_s,
            _ => None,
        };
        if let Some(seconds) = retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Maps a store error: a query it cannot answer is the caller's (400),
/// anything else is the store's (503, logged).
pub(crate) fn store_error(error: tributary_store::Error) -> ApiError {
    match error {
        tributary_store::Error::InvalidQuery { reason } => ApiError::BadBody(reason),
        other => {
            tracing::error!(error = %other, "store");
            ApiError::Unavailable("the store failed; the server log has the cause".into())
        }
    }
}

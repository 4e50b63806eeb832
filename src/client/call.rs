//! One HTTP call to make, checked and built from a caller's arguments.

use ureq::http;

use crate::assemble::Api;
use crate::error::Error;
use crate::policy::ratelimit::{Refusal, Ticket};
use crate::request::{parse_object, RequestFacts};

/// One HTTP call to make: method, path below `base_url`, and body.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: http::Method,
    pub path: String,
    pub body: Option<Vec<u8>>,
    /// What the request is (model, stream, token estimate), read once
    /// where its JSON was parsed; defaults for a raw call.
    pub facts: RequestFacts,
    /// `None`: a JSON call (`application/json` when there is a body).
    /// `Some(ct)`: a raw call, sent with that `Content-Type` (none when
    /// empty) and `Accept: */*`.
    pub content_type: Option<String>,
    /// The rate-limit booking, when it was made with the cost side's
    /// questions before the call (see `Client::prepare`); `None`: the
    /// gate books.
    pub rate_slot: Option<Result<Ticket, Refusal>>,
}

/// Reads a 2xx answer's body: the whole of it, or event by event for a
/// stream. On failure it returns what it read so far with the error.
/// `Send`: an async call may resume on another library thread after a wait.
pub type BodyReader<'a> = dyn FnMut(&mut ureq::Body) -> Result<Vec<u8>, BodyFailure> + Send + 'a;

/// A body read that failed: what arrived, why, and whether asking again is
/// safe (a stream that handed its caller nothing yet).
#[derive(Debug)]
pub struct BodyFailure {
    pub partial: Vec<u8>,
    pub error: Error,
    pub resend: bool,
}

impl BodyFailure {
    /// A failure after which the answer is not asked for again.
    pub fn last((partial, error): (Vec<u8>, Error)) -> BodyFailure {
        BodyFailure {
            partial,
            error,
            resend: false,
        }
    }
}

impl Call {
    /// A JSON API whose 2xx body must be JSON.
    pub(crate) fn path_is_json_api(&self) -> bool {
        self.api().is_some() || self.path == "/embeddings"
    }

    /// The answer API this call speaks, if it is one of the three
    /// (a JSON call to its path: `request_raw` bodies are left alone).
    pub(crate) fn api(&self) -> Option<Api> {
        if self.content_type.is_some() {
            return None;
        }
        [Api::Chat, Api::Responses, Api::Messages]
            .into_iter()
            .find(|a| a.path() == self.path)
    }
}

/// Checks a `request` call's arguments and builds it; `estimate` says
/// whether its facts need the prompt-token estimate.
pub(crate) fn request_call(
    method: &str,
    path: &str,
    body_json: Option<&str>,
    estimate: bool,
) -> Result<Call, Error> {
    let method = parse_method(method)?;
    check_path(path)?;
    let (body, facts) = match body_json {
        None => (None, RequestFacts::default()),
        Some(text) => {
            let v = parse_object(text, "body_json")?;
            let mut facts = RequestFacts::read(&v, estimate);
            // The method and path say whether it streams, not the body.
            facts.stream = false;
            (Some(text.as_bytes().to_vec()), facts)
        }
    };
    Ok(Call {
        method,
        path: path.to_string(),
        body,
        facts,
        content_type: None,
        rate_slot: None,
    })
}

/// The call [`super::Client::request_raw`] makes, or why its arguments are refused.
pub(crate) fn raw_call(
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&[u8]>,
) -> Result<Call, Error> {
    let method = parse_method(method)?;
    check_path(path)?;
    let ct = content_type.unwrap_or("");
    if ct.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        return Err(Error::invalid(
            "content_type: must be printable ASCII without line breaks",
        ));
    }
    Ok(Call {
        method,
        path: path.to_string(),
        body: body.map(<[u8]>::to_vec),
        facts: RequestFacts::default(),
        content_type: Some(ct.to_string()),
        rate_slot: None,
    })
}

fn check_path(path: &str) -> Result<(), Error> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "path: must start with '/', got \"{path}\""
        )))
    }
}

fn parse_method(m: &str) -> Result<http::Method, Error> {
    match m.to_ascii_uppercase().as_str() {
        "GET" => Ok(http::Method::GET),
        "POST" => Ok(http::Method::POST),
        "PUT" => Ok(http::Method::PUT),
        "PATCH" => Ok(http::Method::PATCH),
        "DELETE" => Ok(http::Method::DELETE),
        "HEAD" => Ok(http::Method::HEAD),
        "OPTIONS" => Ok(http::Method::OPTIONS),
        _ => Err(Error::invalid(format!(
            "method: expected GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS, got \"{m}\""
        ))),
    }
}

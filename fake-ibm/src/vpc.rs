//! The VPC instance metadata service's identity calls (`fleet.md` §3), as
//! go-sdk-core's `VpcInstanceAuthenticator` speaks them:
//!
//! 1. `PUT /instance_identity/v1/token?version=…`, `Metadata-Flavor: ibm`,
//!    `{"expires_in": 300}` → an instance identity token;
//! 2. `POST /instance_identity/v1/iam_token?version=…`,
//!    `Authorization: Bearer <instance identity token>`, optionally
//!    `{"trusted_profile": {"id": …}}` or `{"trusted_profile": {"crn": …}}` → an IAM access
//!    token for that trusted profile (or the instance's default one).
//!
//! Both answer `{"access_token", "created_at", "expires_at", "expires_in"}`. The newer paths of
//! API version 2025-07-15 (`/identity/v1/token`, `/identity/v1/iam_tokens`) are served the same
//! way. Error bodies have the VPC APIs' `{"errors": [{"code", "message", "more_info"}],
//! "trace"}` shape; their codes are INVENTED (the metadata service's own are not in the notes).

use serde_json::{json, Map, Value};

use super::{
    make_jwt, new_access_token, now_millis, now_secs, reason, rfc3339, FaultKind, Identity,
    Outcome, Request, Response, Shared, State, CR_TOKEN_GRANT,
};

/// `PUT` here creates an instance identity token (API version 2022-03-01).
pub const VPC_TOKEN_PATH: &str = "/instance_identity/v1/token";
/// `POST` here trades an instance identity token for an IAM access token (2022-03-01).
pub const VPC_IAM_TOKEN_PATH: &str = "/instance_identity/v1/iam_token";
/// The instance identity token path of API version 2025-07-15.
pub const IDENTITY_TOKEN_PATH: &str = "/identity/v1/token";
/// The IAM token path of API version 2025-07-15.
pub const IDENTITY_IAM_TOKEN_PATH: &str = "/identity/v1/iam_tokens";
/// The `version` the helper sends (`fleet.md` §3).
pub const METADATA_VERSION: &str = "2022-03-01";
/// The `sub` of this fake instance's identity: what a profile's trust rule for compute
/// resource type `VSI` accepts. INVENTED instance id.
pub const VPC_INSTANCE_SUB: &str =
    "crn:v1:bluemix:public:is:us-south-1:a/0123456789abcdef0123456789abcdef::instance:0717_fake";
/// Longest instance identity token the service issues, seconds (go-sdk-core asks for 300).
const MAX_IDENTITY_LIFETIME: u64 = 3600;
/// Shortest. INVENTED bound.
const MIN_IDENTITY_LIFETIME: u64 = 5;

/// True for every path this module serves.
pub fn is_metadata_path(path: &str) -> bool {
    [
        VPC_TOKEN_PATH,
        VPC_IAM_TOKEN_PATH,
        IDENTITY_TOKEN_PATH,
        IDENTITY_IAM_TOKEN_PATH,
    ]
    .contains(&path)
        || path.starts_with("/instance_identity/")
}

/// A metadata error body with `status`.
fn error(st: &mut State, status: u16, code: &str, message: &str) -> Response {
    let trace = st.uuid();
    Response::json(
        status,
        &json!({
            "errors": [{
                "code": code,
                "message": message,
                "more_info": "https://cloud.ibm.com/docs/vpc?topic=vpc-imd-about",
            }],
            "trace": trace,
        }),
    )
}

/// An injected status or 429 in the metadata service's error shape; other faults are handled
/// as for every path.
pub fn fault(shared: &Shared, _req: &Request, kind: &FaultKind) -> Option<Outcome> {
    let mut st = super::lock(&shared.state);
    match kind {
        FaultKind::Status(status) => {
            let message = format!("Injected fault: HTTP {status} {}", reason(*status));
            Some(Outcome::Respond(error(
                &mut st,
                *status,
                "injected_fault",
                &message,
            )))
        }
        FaultKind::TooManyRequests { retry_after_secs } => {
            let resp = error(&mut st, 429, "too_many_requests", "Too many requests.");
            Some(Outcome::Respond(
                resp.with_header("Retry-After", &retry_after_secs.to_string()),
            ))
        }
        _ => None,
    }
}

/// Serves one metadata request.
pub fn route(st: &mut State, req: &Request) -> Response {
    let (create_token, method) = match req.path.as_str() {
        VPC_TOKEN_PATH | IDENTITY_TOKEN_PATH => (true, "PUT"),
        VPC_IAM_TOKEN_PATH | IDENTITY_IAM_TOKEN_PATH => (false, "POST"),
        _ => {
            return error(
                st,
                404,
                "not_found",
                "The requested resource does not exist.",
            )
        }
    };
    if req.method != method {
        let message = format!("The method must be {method}.");
        return error(st, 405, "method_not_allowed", &message).with_header("Allow", method);
    }
    match req.query_param("version") {
        Some(v) if is_date(&v) => {}
        Some(_) => {
            return error(
                st,
                400,
                "bad_version",
                "The version query parameter must be a date YYYY-MM-DD.",
            )
        }
        None => {
            return error(
                st,
                400,
                "missing_version",
                "The version query parameter is required.",
            )
        }
    }
    let body = match json_body(req) {
        Ok(body) => body,
        Err(why) => return error(st, 400, "bad_body", why),
    };
    if create_token {
        create_identity_token(st, req, &body)
    } else {
        create_iam_token(st, req, &body)
    }
}

/// `YYYY-MM-DD`.
fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// The body as a JSON object: empty is `{}`; anything but a JSON object is refused. The
/// `Content-Type` is not checked: IBM's own example (`curl -X PUT … -d '{}'`) sends curl's
/// form default with a JSON body.
fn json_body(req: &Request) -> Result<Map<String, Value>, &'static str> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&req.body) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err("The request body must be a JSON object."),
    }
}

fn create_identity_token(st: &mut State, req: &Request, body: &Map<String, Value>) -> Response {
    if !req
        .header("metadata-flavor")
        .is_some_and(|v| v.eq_ignore_ascii_case("ibm"))
    {
        return error(
            st,
            400,
            "missing_metadata_flavor",
            "The Metadata-Flavor: ibm header is required.",
        );
    }
    let lifetime = match body.get("expires_in") {
        None => 300,
        Some(v) => match v.as_u64() {
            Some(n) if (MIN_IDENTITY_LIFETIME..=MAX_IDENTITY_LIFETIME).contains(&n) => n,
            _ => {
                return error(
                    st,
                    400,
                    "bad_expires_in",
                    "expires_in must be an integer from 5 to 3600.",
                )
            }
        },
    };
    if let Some(extra) = body.keys().find(|k| *k != "expires_in") {
        let message = format!("Unknown field `{extra}`.");
        return error(st, 400, "bad_body", &message);
    }
    let now = now_secs();
    let exp = now + lifetime;
    let jti = st.uuid();
    let token = make_jwt(&json!({
        "iss": "https://api.metadata.cloud.ibm.com",
        "sub": VPC_INSTANCE_SUB,
        "iat": now,
        "exp": exp,
        "jti": jti,
    }));
    st.instance_tokens.insert(token.clone(), exp);
    st.stats.vpc_identity_tokens += 1;
    answer(&token, now, exp)
}

fn create_iam_token(st: &mut State, req: &Request, body: &Map<String, Value>) -> Response {
    let now = now_secs();
    let presented = req
        .header("authorization")
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string());
    let valid = presented
        .as_ref()
        .and_then(|t| st.instance_tokens.get(t))
        .is_some_and(|exp| *exp > now);
    if !valid {
        return error(
            st,
            401,
            "unauthorized",
            "A valid instance identity token is required.",
        );
    }
    let named = match body.get("trusted_profile") {
        None => None,
        Some(Value::Object(p)) => {
            let field = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
            match (field("id"), field("crn"), p.len()) {
                (Some(id), None, 1) => Some((true, id)),
                (None, Some(crn), 1) => Some((false, crn)),
                _ => {
                    return error(
                        st,
                        400,
                        "bad_trusted_profile",
                        "trusted_profile takes exactly one of id or crn.",
                    )
                }
            }
        }
        Some(_) => {
            return error(
                st,
                400,
                "bad_trusted_profile",
                "trusted_profile must be an object.",
            )
        }
    };
    if let Some(extra) = body.keys().find(|k| *k != "trusted_profile") {
        let message = format!("Unknown field `{extra}`.");
        return error(st, 400, "bad_body", &message);
    }
    let wanted = match named {
        Some(named) => named,
        None => match st.config.vpc_default_profile.clone() {
            Some(id) => (true, id),
            None => {
                return error(
                    st,
                    400,
                    "no_default_profile",
                    "The instance has no default trusted profile; name one.",
                )
            }
        },
    };
    let profile = st
        .config
        .profiles
        .iter()
        .find(|p| match &wanted {
            (true, id) => &p.id == id,
            (false, crn) => &p.crn == crn,
        })
        .cloned();
    let Some(profile) = profile else {
        return error(
            st,
            404,
            "trusted_profile_not_found",
            "The trusted profile does not exist.",
        );
    };
    if !profile.accepts(VPC_INSTANCE_SUB) {
        return error(
            st,
            403,
            "trusted_profile_not_linked",
            "The trusted profile does not trust this instance.",
        );
    }
    let identity = Identity::of_profile(&profile);
    let (token, exp) = new_access_token(st, &profile.account, &identity, CR_TOKEN_GRANT, false);
    st.stats.vpc_iam_tokens += 1;
    answer(&token, now, exp)
}

/// The shape both calls answer.
fn answer(token: &str, now: u64, exp: u64) -> Response {
    let millis = now_millis();
    Response::json(
        200,
        &json!({
            "access_token": token,
            "created_at": rfc3339(millis - millis % 1000),
            "expires_at": rfc3339(exp * 1000),
            "expires_in": exp.saturating_sub(now),
        }),
    )
}

//! Self-test of the fake IBM API (this crate) through a tiny std HTTP client, so the helper's
//! tests can trust what the fake says about the wire.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use fake_ibm::{
    decode_jwt_payload, make_jwt, Config, FakeIbm, Fault, FaultKind, TrustedProfile,
    VPC_INSTANCE_SUB,
};
use serde_json::{json, Value};

const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const OTHER_ACCOUNT: &str = "fedcba9876543210fedcba9876543210";
const KEY: &str = "canary-api-key-1";
const FORM: &str = "application/x-www-form-urlencoded";

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one response off `stream`; `None` if the server closed without a complete answer.
fn read_reply(stream: &mut TcpStream) -> Option<Reply> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; length];
    stream.read_exact(&mut body).ok()?;
    Some(Reply {
        status,
        headers,
        body,
    })
}

fn send(stream: &mut TcpStream, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(req.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
}

fn connect(fake: &FakeIbm) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", fake.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// One request on a fresh connection; `None` if the server closed without answering.
fn try_http(
    fake: &FakeIbm,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Reply> {
    let mut stream = connect(fake);
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    all.push(("Connection", "close"));
    send(&mut stream, method, target, &all, body);
    read_reply(&mut stream)
}

fn http(fake: &FakeIbm, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    try_http(fake, method, target, headers, body.as_bytes()).expect("an answer")
}

fn apikey_grant(fake: &FakeIbm, key: &str) -> Reply {
    let body = format!("grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey={key}");
    http(
        fake,
        "POST",
        "/identity/token",
        &[("Content-Type", FORM), ("Accept", "application/json")],
        &body,
    )
}

fn access_token(fake: &FakeIbm) -> String {
    let reply = apikey_grant(fake, KEY);
    assert_eq!(reply.status, 200);
    reply.json()["access_token"].as_str().unwrap().to_string()
}

fn server() -> FakeIbm {
    let fake = FakeIbm::start(Config::default());
    fake.add_api_key(KEY, ACCOUNT);
    fake
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{user}:{pass}").as_bytes())
    )
}

fn registry_auth(fake: &FakeIbm, host: &str, method: &str, user: &str, pass: &str) -> Reply {
    let auth = basic(user, pass);
    http(
        fake,
        "GET",
        "/registry-auth",
        &[
            ("Authorization", &auth),
            ("X-Original-Host", host),
            ("X-Original-Method", method),
        ],
        "",
    )
}

#[test]
fn every_answer_is_dated_as_a_real_server_s() {
    assert_eq!(
        fake_ibm::http_date(784_111_777),
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
    assert_eq!(fake_ibm::http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(
        fake_ibm::http_date(1_835_481_599),
        "Tue, 29 Feb 2028 23:59:59 GMT"
    );
    let fake = server();
    let before = claims_now();
    let reply = http(&fake, "GET", "/identity/token", &[], "");
    assert_eq!(reply.status, 405);
    let date = reply.header("date").expect("a Date header");
    let after = claims_now();
    assert!(
        (before..=after).any(|t| fake_ibm::http_date(t) == date),
        "{date} is the fake's clock"
    );
}

#[test]
fn hmac_matches_rfc4231_case_2() {
    let mac = fake_ibm::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn jwt_round_trips_and_has_the_hs256_header() {
    let payload = json!({"exp": 1540423054u64, "jti": "x", "iss": "registry.ng.bluemix.net"});
    let jwt = make_jwt(&payload);
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert!(!jwt.contains('='), "no padding: {jwt}");
    assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
    assert_eq!(decode_jwt_payload(&jwt), Some(payload));
    assert_eq!(decode_jwt_payload("not.a-jwt"), None);
    assert_eq!(decode_jwt_payload("a.!!!.c"), None);
}

#[test]
fn apikey_grant_with_raw_and_encoded_colons() {
    let fake = server();
    for body in [
        format!("grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey={KEY}"),
        format!("grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey={KEY}&response_type=cloud_iam"),
    ] {
        let reply = http(&fake, "POST", "/identity/token", &[("Content-Type", FORM)], &body);
        assert_eq!(reply.status, 200, "{body}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let json = reply.json();
        assert_eq!(json["refresh_token"], "not_supported");
        assert_eq!(json["token_type"], "Bearer");
        assert_eq!(json["expires_in"], 3600);
        assert_eq!(json["scope"], "ibm openid");
        assert!(json["ims_user_id"].is_u64());
        let claims = decode_jwt_payload(json["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(claims["account"]["bss"], ACCOUNT);
        assert_eq!(claims["account"]["boundary"], "global");
        assert_eq!(claims["sub_type"], "ServiceId");
        assert_eq!(claims["iss"], "https://iam.cloud.ibm.com/identity");
        assert!(claims["iam_id"].as_str().unwrap().starts_with("iam-ServiceId-"));
        assert_eq!(claims["exp"], json["expiration"]);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            3600
        );
    }
    assert_eq!(fake.stats().iam_mints, 2);
}

#[test]
fn bx_client_gets_a_refresh_token_that_refreshes() {
    let fake = server();
    let body = format!("grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey={KEY}");
    let bx = [("Content-Type", FORM), ("Authorization", "Basic Yng6Yng=")];
    let first = http(&fake, "POST", "/identity/token", &bx, &body).json();
    let refresh = first["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh, "not_supported");

    let refresh_body = format!("grant_type=refresh_token&refresh_token={refresh}");
    let second = http(&fake, "POST", "/identity/token", &bx, &refresh_body);
    assert_eq!(second.status, 200);
    let second = second.json();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    let claims = decode_jwt_payload(second["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["account"]["bss"], ACCOUNT);

    let no_client = http(
        &fake,
        "POST",
        "/identity/token",
        &[("Content-Type", FORM)],
        &refresh_body,
    );
    assert_eq!(
        (no_client.status, no_client.json()["errorCode"].clone()),
        (400, json!("BXNIM0308E"))
    );
    let unknown = http(
        &fake,
        "POST",
        "/identity/token",
        &bx,
        "grant_type=refresh_token&refresh_token=nope",
    );
    assert_eq!(
        (unknown.status, unknown.json()["errorCode"].clone()),
        (400, json!("BXNIM0407E"))
    );
}

#[test]
fn iam_errors_have_the_documented_shape() {
    let fake = server();
    let reply = apikey_grant(&fake, "wrong-key");
    assert_eq!(reply.status, 400);
    assert!(reply.header("transaction-id").is_some());
    let json = reply.json();
    assert_eq!(json["errorCode"], "BXNIM0415E");
    assert_eq!(json["errorMessage"], "Provided API key could not be found");
    assert_eq!(json["context"]["requestType"], "incoming.Identity_Token");
    assert_eq!(json["context"]["requestId"].as_str().unwrap().len(), 32);

    let json_body = format!(
        r#"{{"grant_type":"{}","apikey":"{KEY}"}}"#,
        fake_ibm::APIKEY_GRANT
    );
    let wrong_type = http(
        &fake,
        "POST",
        "/identity/token",
        &[("Content-Type", "application/json")],
        &json_body,
    );
    assert_eq!(wrong_type.status, 400);
    assert_eq!(wrong_type.json()["errorCode"], "BXNIM0109E");
    let missing = http(
        &fake,
        "POST",
        "/identity/token",
        &[("Content-Type", FORM)],
        "grant_type=urn:ibm:params:oauth:grant-type:apikey",
    );
    assert_eq!(missing.json()["errorCode"], "BXNIM0109E");
    let other = http(
        &fake,
        "POST",
        "/identity/token",
        &[("Content-Type", FORM)],
        "grant_type=password&username=a&password=b",
    );
    assert_eq!(other.status, 400);
    assert_eq!(other.json()["errorCode"], "BXNIM0103E");
    let stats = fake.stats();
    assert_eq!((stats.iam_mints, stats.iam_failures), (0, 4));
}

#[test]
fn registry_token_lifecycle_with_account_checks() {
    let fake = server();
    let token = access_token(&fake);
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str()), ("Account", ACCOUNT)];

    // Wrong account, no bearer, unknown bearer: CRG0009E.
    let wrong = [
        ("Authorization", bearer.as_str()),
        ("Account", OTHER_ACCOUNT),
    ];
    for headers in [
        &wrong[..],
        &[("Account", ACCOUNT)][..],
        &[("Authorization", "Bearer x"), ("Account", ACCOUNT)][..],
    ] {
        let reply = http(&fake, "GET", "/api/v1/tokens", headers, "");
        assert_eq!(reply.status, 401);
        let json = reply.json();
        assert_eq!(json["code"], "CRG0009E");
        assert_eq!(
            json["message"],
            "You are not authorized to access the specified account."
        );
        assert!(json["request-id"].is_string());
    }

    let created = http(
        &fake,
        "POST",
        "/api/v1/tokens?description=my+cluster&permanent=false&write=true",
        &auth,
        "",
    );
    assert_eq!(created.status, 200);
    let value = created.json()["token"].as_str().unwrap().to_string();
    let claims = decode_jwt_payload(&value).unwrap();
    let id = claims["jti"].as_str().unwrap().to_string();
    assert_eq!(claims["iss"], "127.0.0.1");
    assert!(claims["exp"].as_u64().unwrap() > 86000 + claims_now());

    let permanent = http(
        &fake,
        "POST",
        "/api/v1/tokens?description=ro&permanent=true&write=false",
        &auth,
        "",
    );
    let permanent = decode_jwt_payload(permanent.json()["token"].as_str().unwrap()).unwrap();
    assert!(permanent.get("exp").is_none());

    let list = http(&fake, "GET", "/api/v1/tokens", &auth, "").json();
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    let mine = tokens.iter().find(|t| t["_id"] == id.as_str()).unwrap();
    assert_eq!(mine["owner"], ACCOUNT);
    assert_eq!(mine["secondary_owner"], "my cluster");
    assert_eq!(mine["readonly"], false);
    assert_eq!(mine["revoked"], false);
    assert_eq!(mine["token"], value.as_str());
    assert!(mine["expiry"].is_u64() && mine["encrypted_token"].is_string());

    let got = http(&fake, "GET", &format!("/api/v1/tokens/{id}"), &auth, "");
    assert_eq!(got.json(), json!({ "token": value }));
    let missing = http(&fake, "GET", "/api/v1/tokens/nope", &auth, "");
    assert_eq!(
        (missing.status, missing.json()["code"].clone()),
        (404, json!("CRG0005E"))
    );

    let deleted = http(&fake, "DELETE", &format!("/api/v1/tokens/{id}"), &auth, "");
    assert_eq!((deleted.status, deleted.json()), (200, json!({})));
    assert_eq!(
        http(&fake, "GET", &format!("/api/v1/tokens/{id}"), &auth, "").status,
        404
    );

    // Delete by description.
    for _ in 0..2 {
        http(
            &fake,
            "POST",
            "/api/v1/tokens?description=ko_rw&write=true",
            &auth,
            "",
        );
    }
    let bulk = http(
        &fake,
        "DELETE",
        "/api/v1/tokens?secondaryOwner=ko_rw",
        &auth,
        "",
    );
    assert_eq!(bulk.status, 200);
    let left = http(&fake, "GET", "/api/v1/tokens", &auth, "").json();
    assert_eq!(left["tokens"].as_array().unwrap().len(), 1);

    let stats = fake.stats();
    assert_eq!(stats.registry_token_creates, 4);
    assert_eq!(stats.registry_token_deletes, 3);
}

fn claims_now() -> u64 {
    std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .unwrap()
        .as_secs()
}

#[test]
fn refusal_switch() {
    let fake = server();
    let bearer = format!("Bearer {}", access_token(&fake));
    let auth = [("Authorization", bearer.as_str()), ("Account", ACCOUNT)];
    fake.update(|c| c.refuse_token_creation = true);
    let reply = http(
        &fake,
        "POST",
        "/api/v1/tokens?description=d&permanent=false&write=true",
        &auth,
        "",
    );
    assert_eq!(reply.status, fake_ibm::CREATION_REFUSED_STATUS);
    assert_eq!(reply.json()["code"], "CRG0140E");
    assert_eq!(fake.stats().registry_token_creates, 0);
}

#[test]
fn registry_auth_decisions() {
    let fake = server();
    fake.update(|c| {
        c.plain_users.insert(
            "registry.example.com".into(),
            ("alice".into(), "s3cret".into()),
        );
    });
    let bearer = access_token(&fake);
    let auth = format!("Bearer {bearer}");
    let headers = [("Authorization", auth.as_str()), ("Account", ACCOUNT)];
    let ro = http(&fake, "POST", "/api/v1/tokens?write=false", &headers, "").json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let rw = http(&fake, "POST", "/api/v1/tokens?write=true", &headers, "").json()["token"]
        .as_str()
        .unwrap()
        .to_string();

    let cases: &[(&str, &str, &str, &str, u16)] = &[
        ("us.icr.io", "GET", "iamapikey", KEY, 200),
        ("us.icr.io:443", "PUT", "iamapikey", KEY, 200),
        ("us.icr.io", "GET", "iamapikey", "wrong", 401),
        ("de.icr.io", "GET", "iambearer", &bearer, 200),
        ("de.icr.io", "GET", "iambearer", "Bearer x", 401),
        ("icr.io", "GET", "token", &ro, 200),
        ("icr.io", "HEAD", "token", &ro, 200),
        ("icr.io", "PUT", "token", &ro, 401),
        ("icr.io", "PUT", "token", &rw, 200),
        ("icr.io", "GET", "someone", KEY, 401),
        ("registry.example.com:5000", "GET", "alice", "s3cret", 200),
        ("registry.example.com", "GET", "alice", "wrong", 401),
        ("registry.example.com", "GET", "iamapikey", KEY, 401),
    ];
    for &(host, method, user, pass, want) in cases {
        let reply = registry_auth(&fake, host, method, user, pass);
        assert_eq!(reply.status, want, "{host} {method} {user}");
        assert!(reply.body.is_empty());
        if want == 401 {
            let realm = if host.starts_with("registry.example.com") {
                "Basic realm=\"registry.example.com\""
            } else {
                "Basic realm=\"IBM Cloud Container Registry\""
            };
            assert_eq!(reply.header("www-authenticate"), Some(realm));
        }
    }
    // An expired access token is refused.
    fake.update(|c| c.iam_lifetime = 0);
    let expired = access_token(&fake);
    assert_eq!(
        registry_auth(&fake, "us.icr.io", "GET", "iambearer", &expired).status,
        401
    );

    let stats = fake.stats();
    assert_eq!(stats.registry_auth_ok, 7);
    assert_eq!(stats.registry_auth_denied, 7);
    assert_eq!(stats.registry_auth_by_user["iamapikey"], 2);
    assert_eq!(stats.registry_auth_by_user["token"], 3);
    assert_eq!(stats.registry_auth_by_user["plain:alice"], 1);
    // /registry-auth is not in the request log.
    assert_eq!(fake.count("GET", "/registry-auth"), 0);
}

#[test]
fn status_fault_with_times_one_is_consumed_and_recorded() {
    let fake = server();
    fake.inject(Fault::new("/identity/token", FaultKind::Status(500), 1));
    let first = apikey_grant(&fake, KEY);
    assert_eq!(first.status, 500);
    assert_eq!(first.json()["errorCode"], fake_ibm::IAM_FAULT_CODE);
    assert_eq!(apikey_grant(&fake, KEY).status, 200);
    assert_eq!(fake.count("POST", "/identity/token"), 2);

    // Registry-shaped body on the registry API; method filter.
    fake.inject(Fault {
        method: Some("GET".into()),
        path_prefix: "/api/".into(),
        kind: FaultKind::Status(503),
        times: 0,
    });
    let reply = http(&fake, "GET", "/api/v1/tokens", &[], "");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["code"], fake_ibm::CRG_FAULT_CODE);
    assert_eq!(http(&fake, "GET", "/api/v1/tokens", &[], "").status, 503);
    assert_eq!(http(&fake, "POST", "/api/v1/tokens", &[], "").status, 401);
    fake.clear_faults();
    assert_eq!(http(&fake, "GET", "/api/v1/tokens", &[], "").status, 401);
}

#[test]
fn other_fault_kinds() {
    let fake = server();
    let body = format!("grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey={KEY}");
    let post = |fake: &FakeIbm| {
        try_http(
            fake,
            "POST",
            "/identity/token",
            &[("Content-Type", FORM)],
            body.as_bytes(),
        )
    };

    fake.inject(Fault::new("/identity", FaultKind::Close, 1));
    assert!(post(&fake).is_none());

    fake.inject(Fault::new(
        "/identity",
        FaultKind::TooManyRequests {
            retry_after_secs: 7,
        },
        1,
    ));
    let reply = post(&fake).unwrap();
    assert_eq!(
        (reply.status, reply.header("retry-after")),
        (429, Some("7"))
    );

    fake.inject(Fault::new("/identity", FaultKind::GarbageJson, 1));
    let reply = post(&fake).unwrap();
    assert_eq!(reply.status, 200);
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());

    fake.inject(Fault::new("/identity", FaultKind::TruncatedJson, 1));
    assert!(post(&fake).is_none(), "body shorter than Content-Length");

    fake.inject(Fault::new(
        "/identity",
        FaultKind::Delay(Duration::from_millis(150)),
        1,
    ));
    let start = Instant::now();
    assert_eq!(post(&fake).unwrap().status, 200);
    assert!(start.elapsed() >= Duration::from_millis(150));

    assert_eq!(fake.count("POST", "/identity/token"), 5);
}

#[test]
fn error_faults_carry_the_chosen_code_and_message() {
    let fake = server();
    fake.inject(Fault::new(
        "/identity",
        FaultKind::Error {
            status: 400,
            code: "BXNIM0415E".into(),
            message: format!("no key {KEY}"),
        },
        1,
    ));
    let reply = apikey_grant(&fake, KEY);
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(
        (&body["errorCode"], &body["errorMessage"]),
        (&json!("BXNIM0415E"), &json!(format!("no key {KEY}")))
    );
    assert_eq!(apikey_grant(&fake, KEY).status, 200, "consumed");

    let fault =
        r#"{"path_prefix":"/api/","kind":"error","status":403,"code":"CRG0009E","message":"m"}"#;
    assert_eq!(http(&fake, "POST", "/_fake/fault", &[], fault).status, 200);
    let reply = http(&fake, "POST", "/api/v1/tokens", &[], "");
    assert_eq!(reply.status, 403);
    assert_eq!(
        (&reply.json()["code"], &reply.json()["message"]),
        (&json!("CRG0009E"), &json!("m"))
    );
    let no_message = r#"{"kind":"error","code":"X"}"#;
    assert_eq!(
        http(&fake, "POST", "/_fake/fault", &[], no_message).status,
        400
    );
}

#[test]
fn request_log_contents() {
    let fake = server();
    let mut stream = connect(&fake);
    // Keep-alive: two requests on one connection.
    send(
        &mut stream,
        "POST",
        "/identity/token?x=1",
        &[("Content-Type", FORM), ("X-Custom", "Value")],
        format!("grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey={KEY}").as_bytes(),
    );
    assert_eq!(read_reply(&mut stream).unwrap().status, 200);
    send(
        &mut stream,
        "GET",
        "/api/v1/tokens?description=a%20b",
        &[],
        b"",
    );
    assert_eq!(read_reply(&mut stream).unwrap().status, 401);
    drop(stream);
    http(&fake, "GET", "/_fake/stats", &[], "");

    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (
            log[0].method.as_str(),
            log[0].path.as_str(),
            log[0].query.as_str()
        ),
        ("POST", "/identity/token", "x=1")
    );
    assert_eq!(log[0].header("X-CUSTOM"), Some("Value"));
    assert!(log[0].headers.iter().any(|(n, _)| n == "content-type"));
    assert_eq!(log[0].form_param("apikey").as_deref(), Some(KEY));
    assert_eq!(
        log[0].form_param("grant_type").as_deref(),
        Some(fake_ibm::APIKEY_GRANT)
    );
    assert_eq!(log[1].query_param("description").as_deref(), Some("a b"));
    assert_eq!(fake.count("GET", "/api/v1/tokens"), 1);
    fake.clear_requests();
    assert!(fake.requests().is_empty());
}

#[test]
fn control_endpoints() {
    let fake = FakeIbm::start(Config::default());
    let config = r#"{"iam_lifetime":30,"registry_token_lifetime":30,"refuse_token_creation":true,"api_keys":{"k":"acct"},"plain_users":{"h.example":"u:p"}}"#;
    assert_eq!(
        http(&fake, "POST", "/_fake/config", &[], config).status,
        200
    );
    assert_eq!(
        http(&fake, "POST", "/_fake/config", &[], r#"{"nope":1}"#).status,
        400
    );
    let reply = apikey_grant(&fake, "k");
    assert_eq!(reply.json()["expires_in"], 30);

    let fault = r#"{"method":"POST","path_prefix":"/identity/token","kind":"status","status":502,"times":1}"#;
    assert_eq!(http(&fake, "POST", "/_fake/fault", &[], fault).status, 200);
    assert_eq!(
        http(&fake, "POST", "/_fake/fault", &[], r#"{"kind":"bogus"}"#).status,
        400
    );
    assert_eq!(apikey_grant(&fake, "k").status, 502);
    let forever = r#"{"method":null,"path_prefix":"/identity","kind":"too_many","retry_after":1}"#;
    http(&fake, "POST", "/_fake/fault", &[], forever);
    assert_eq!(apikey_grant(&fake, "k").status, 429);
    http(&fake, "POST", "/_fake/faults/clear", &[], "");
    assert_eq!(apikey_grant(&fake, "k").status, 200);

    let stats = http(&fake, "GET", "/_fake/stats", &[], "").json();
    assert_eq!(stats["iam_mints"], 2);
    assert_eq!(stats["iam_failures"], 2);
    assert!(stats["registry_auth_by_user"].is_object());

    let log = http(&fake, "GET", "/_fake/requests", &[], "").json();
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(log[0]["path"], "/identity/token");
    assert_eq!(log[0]["headers"]["content-type"], FORM);
    assert!(log[0]["body"].as_str().unwrap().contains("apikey=k"));

    assert_eq!(http(&fake, "POST", "/_fake/reset", &[], "").status, 200);
    assert_eq!(
        http(&fake, "GET", "/_fake/requests", &[], "").json(),
        json!([])
    );
    assert_eq!(
        http(&fake, "GET", "/_fake/stats", &[], "").json()["iam_mints"],
        0
    );
    assert_eq!(http(&fake, "GET", "/_fake/nope", &[], "").status, 404);
}

#[test]
fn bad_input_gets_400_not_a_panic() {
    let fake = server();
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /identity/token HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"GET /api/v1/tokens HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET \xff\xfe HTTP/1.1\r\n\r\n",
        b"GET relative HTTP/1.1\r\n\r\n",
    ] {
        let mut stream = connect(&fake);
        stream.write_all(raw).unwrap();
        let reply = read_reply(&mut stream).expect("an answer");
        assert_eq!(reply.status, 400, "{:?}", String::from_utf8_lossy(raw));
    }
    // An oversized head.
    let mut stream = connect(&fake);
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(70 * 1024));
    let _ = stream.write_all(huge.as_bytes());
    assert_eq!(read_reply(&mut stream).map(|r| r.status), Some(400));
    // A bogus Basic header and a chunked body still get sensible answers.
    let reply = http(
        &fake,
        "GET",
        "/registry-auth",
        &[("Authorization", "Basic %%%")],
        "",
    );
    assert_eq!(reply.status, 401);
    let mut stream = connect(&fake);
    let body = format!("grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey={KEY}");
    let chunked = format!(
        "POST /identity/token HTTP/1.1\r\nContent-Type: {FORM}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    stream.write_all(chunked.as_bytes()).unwrap();
    assert_eq!(read_reply(&mut stream).unwrap().status, 200);
    // The server survived all of it.
    assert_eq!(apikey_grant(&fake, KEY).status, 200);
}

#[test]
fn drop_stops_the_server() {
    let fake = server();
    let port = fake.port();
    assert_eq!(fake.url(), format!("http://127.0.0.1:{port}"));
    // An idle keep-alive connection must not keep Drop waiting.
    let idle = connect(&fake);
    let start = Instant::now();
    drop(fake);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    drop(idle);
}

// ---- issue 11: the cr-token and refresh grants, trusted profiles, the VPC metadata service ----

const K8S: &str = "https://kubernetes.default.svc";
const SA: &str = "system:serviceaccount:ci:builder";

fn with_profile() -> (FakeIbm, TrustedProfile) {
    let fake = server();
    let profile = TrustedProfile::new("ci-pull", ACCOUNT, &[SA, VPC_INSTANCE_SUB]);
    fake.add_profile(profile.clone());
    (fake, profile)
}

fn cr_grant(fake: &FakeIbm, cr_token: &str, profile_field: &str, value: &str) -> Reply {
    let body = format!(
        "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Acr-token&cr_token={cr_token}&{profile_field}={}",
        value.replace(':', "%3A").replace('/', "%2F")
    );
    http(
        fake,
        "POST",
        "/identity/token",
        &[("Content-Type", FORM), ("Accept", "application/json")],
        &body,
    )
}

#[test]
fn profiles_have_derived_ids_and_crns() {
    let p = TrustedProfile::new("ci-pull", ACCOUNT, &["*"]);
    assert!(p.id.starts_with("Profile-") && p.id.len() == "Profile-".len() + 36);
    assert_eq!(
        p.crn,
        format!(
            "crn:v1:bluemix:public:iam-identity::a/{ACCOUNT}::profile:{}",
            p.id
        )
    );
    assert_eq!(p, TrustedProfile::new("ci-pull", ACCOUNT, &["*"]), "stable");
}

#[test]
fn cr_token_grant_for_each_profile_spelling() {
    let (fake, profile) = with_profile();
    let token = fake.cr_token(K8S, SA, 600);
    let claims = fake_ibm::verify_jwt(&token).unwrap();
    assert_eq!(
        (claims["iss"].as_str(), claims["sub"].as_str()),
        (Some(K8S), Some(SA))
    );
    for (field, value) in [
        ("profile_id", profile.id.as_str()),
        ("profile_name", profile.name.as_str()),
        ("profile_crn", profile.crn.as_str()),
    ] {
        let reply = cr_grant(&fake, &token, field, value);
        assert_eq!(reply.status, 200, "{field}: {:?}", reply.json());
        let json = reply.json();
        assert_eq!(json["refresh_token"], "not_supported");
        let claims = decode_jwt_payload(json["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(claims["sub"], profile.id.as_str());
        assert_eq!(claims["sub_type"], "Profile");
        assert_eq!(
            claims["grant_type"],
            "urn:ibm:params:oauth:grant-type:cr-token"
        );
        assert_eq!(claims["account"]["bss"], ACCOUNT);
    }
    let stats = fake.stats();
    assert_eq!(stats.iam_mints_by_grant.get("cr-token"), Some(&3));
    assert_eq!(stats.iam_mints, 3);
    // The access token works at the registry.
    let access = cr_grant(&fake, &token, "profile_id", &profile.id).json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        registry_auth(&fake, "us.icr.io", "GET", "iambearer", &access).status,
        200
    );
}

#[test]
fn cr_token_grant_failures() {
    let (fake, profile) = with_profile();
    let code = |reply: Reply| {
        assert_eq!(reply.status, 400);
        reply.json()["errorCode"].as_str().unwrap().to_string()
    };
    let expired = fake.cr_token(K8S, SA, 0);
    assert_eq!(
        code(cr_grant(&fake, &expired, "profile_id", &profile.id)),
        "BXNIM0407E"
    );
    let forged = make_jwt(&json!({"sub": SA, "exp": claims_now() + 600}))
        .rsplit_once('.')
        .map(|(head, _)| format!("{head}.AAAA"))
        .unwrap();
    assert_eq!(
        code(cr_grant(&fake, &forged, "profile_id", &profile.id)),
        "BXNIM0407E"
    );
    let token = fake.cr_token(K8S, SA, 600);
    assert_eq!(
        code(cr_grant(&fake, &token, "profile_id", "Profile-unknown")),
        "BXNIM0399E"
    );
    let stranger = fake.cr_token(K8S, "system:serviceaccount:other:default", 600);
    let reply = cr_grant(&fake, &stranger, "profile_name", "ci-pull");
    assert_eq!(reply.status, 400);
    let json = reply.json();
    assert_eq!(json["errorCode"], "BXNIM0398E");
    assert_eq!(
        json["errorMessage"],
        "Selected trusted profile not eligible."
    );
    // No profile, two profiles.
    let body = format!("grant_type=urn:ibm:params:oauth:grant-type:cr-token&cr_token={token}");
    let reply = http(
        &fake,
        "POST",
        "/identity/token",
        &[("Content-Type", FORM)],
        &body,
    );
    assert_eq!(code(reply), "BXNIM0109E");
    let both = format!("{body}&profile_id={}&profile_name=ci-pull", profile.id);
    let reply = http(
        &fake,
        "POST",
        "/identity/token",
        &[("Content-Type", FORM)],
        &both,
    );
    assert_eq!(code(reply), "BXNIM0109E");
    assert_eq!(fake.stats().iam_mints, 0);
}

fn refresh(fake: &FakeIbm, refresh_token: &str) -> Reply {
    let body =
        format!("grant_type=refresh_token&refresh_token={refresh_token}&response_type=cloud_iam");
    http(
        fake,
        "POST",
        "/identity/token",
        &[("Content-Type", FORM), ("Authorization", "Basic Yng6Yng=")],
        &body,
    )
}

#[test]
fn login_sessions_refresh_until_they_expire_or_are_invalidated() {
    let fake = server();
    assert!(fake.login("unknown-key").is_none());
    let (access, refresh_token) = fake.login(KEY).unwrap();
    assert_eq!(fake.stats().iam_mints, 0, "set-up is not counted");
    assert!(fake.requests().is_empty(), "nor recorded");
    assert_eq!(
        registry_auth(&fake, "us.icr.io", "GET", "iambearer", &access).status,
        200
    );
    let reply = refresh(&fake, &refresh_token);
    assert_eq!(reply.status, 200);
    assert_eq!(
        fake.stats().iam_mints_by_grant.get("refresh_token"),
        Some(&1)
    );
    fake.expire_sessions();
    let reply = refresh(&fake, &refresh_token);
    assert_eq!(reply.status, 400);
    let json = reply.json();
    assert_eq!(
        (json["errorCode"].as_str(), json["errorMessage"].as_str()),
        (
            Some("BXNIM0408E"),
            Some("Provided refresh token is expired")
        )
    );
    let (_, second) = fake.login(KEY).unwrap();
    fake.invalidate_sessions();
    assert_eq!(refresh(&fake, &second).json()["errorCode"], "BXNIM0439E");
    // The same through the control endpoints, for shell scripts.
    let reply = http(
        &fake,
        "POST",
        "/_fake/login",
        &[],
        &json!({"api_key": KEY}).to_string(),
    );
    assert_eq!(reply.status, 200);
    let third = reply.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(refresh(&fake, &third).status, 200);
    assert_eq!(
        http(&fake, "POST", "/_fake/sessions/expire", &[], "").status,
        200
    );
    assert_eq!(refresh(&fake, &third).json()["errorCode"], "BXNIM0408E");
    let reply = http(
        &fake,
        "POST",
        "/_fake/cr-token",
        &[],
        r#"{"sub":"s","lifetime":60}"#,
    );
    let token = reply.json()["token"].as_str().unwrap().to_string();
    assert_eq!(fake_ibm::verify_jwt(&token).unwrap()["sub"], "s");
}

fn metadata(
    fake: &FakeIbm,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    http(fake, method, target, headers, body)
}

fn identity_token(fake: &FakeIbm) -> String {
    let reply = metadata(
        fake,
        "PUT",
        "/instance_identity/v1/token?version=2022-03-01",
        &[
            ("Metadata-Flavor", "ibm"),
            ("Content-Type", "application/json"),
        ],
        r#"{"expires_in":300}"#,
    );
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    let json = reply.json();
    assert_eq!(json["expires_in"], 300);
    for k in ["created_at", "expires_at"] {
        let t = json[k].as_str().unwrap();
        assert!(
            t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
    json["access_token"].as_str().unwrap().to_string()
}

#[test]
fn vpc_instance_identity_then_iam_token() {
    let (fake, profile) = with_profile();
    let identity = identity_token(&fake);
    let bearer = format!("Bearer {identity}");
    for body in [
        json!({"trusted_profile": {"id": profile.id}}).to_string(),
        json!({"trusted_profile": {"crn": profile.crn}}).to_string(),
    ] {
        let reply = metadata(
            &fake,
            "POST",
            "/instance_identity/v1/iam_token?version=2022-03-01",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            &body,
        );
        assert_eq!(reply.status, 200, "{body}");
        let access = reply.json()["access_token"].as_str().unwrap().to_string();
        assert_eq!(
            decode_jwt_payload(&access).unwrap()["sub"],
            profile.id.as_str()
        );
        assert_eq!(
            registry_auth(&fake, "de.icr.io", "GET", "iambearer", &access).status,
            200
        );
    }
    // No profile named: the instance's default, when it has one.
    let none = |fake: &FakeIbm| {
        metadata(
            fake,
            "POST",
            "/instance_identity/v1/iam_token?version=2022-03-01",
            &[("Authorization", &bearer)],
            "",
        )
    };
    assert_eq!(none(&fake).status, 400);
    fake.update(|c| c.vpc_default_profile = Some(profile.id.clone()));
    assert_eq!(none(&fake).status, 200);
    // The 2025-07-15 paths behave the same.
    let reply = metadata(
        &fake,
        "PUT",
        "/identity/v1/token?version=2025-07-15",
        &[("Metadata-Flavor", "ibm")],
        "{}",
    );
    assert_eq!(reply.status, 200);
    let stats = fake.stats();
    assert_eq!((stats.vpc_identity_tokens, stats.vpc_iam_tokens), (2, 3));
    assert_eq!(stats.metadata_requests, 6);
    assert_eq!(
        stats.iam_mints, 0,
        "no IAM call: the metadata service answers itself"
    );
}

#[test]
fn vpc_metadata_checks_what_ibm_documents() {
    let (fake, profile) = with_profile();
    let code = |reply: Reply| {
        (
            reply.status,
            reply.json()["errors"][0]["code"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let flavor = [("Metadata-Flavor", "ibm")];
    let put = |target: &str, headers: &[(&str, &str)], body: &str| {
        metadata(&fake, "PUT", target, headers, body)
    };
    assert_eq!(
        code(put("/instance_identity/v1/token", &flavor, "{}")).0,
        400,
        "no version"
    );
    assert_eq!(
        code(put(
            "/instance_identity/v1/token?version=latest",
            &flavor,
            "{}"
        ))
        .0,
        400
    );
    assert_eq!(
        code(put(
            "/instance_identity/v1/token?version=2022-03-01",
            &[],
            "{}"
        ))
        .1,
        "missing_metadata_flavor"
    );
    for lifetime in ["4", "3601", "\"300\""] {
        let body = format!(r#"{{"expires_in":{lifetime}}}"#);
        assert_eq!(
            code(put(
                "/instance_identity/v1/token?version=2022-03-01",
                &flavor,
                &body
            ))
            .0,
            400
        );
    }
    let reply = metadata(
        &fake,
        "POST",
        "/instance_identity/v1/token?version=2022-03-01",
        &flavor,
        "",
    );
    assert_eq!(reply.status, 405);
    // The IAM token needs a live instance identity token, and a profile that trusts the instance.
    let post = |auth: &str, body: &str| {
        metadata(
            &fake,
            "POST",
            "/instance_identity/v1/iam_token?version=2022-03-01",
            &[("Authorization", auth)],
            body,
        )
    };
    let id = json!({"trusted_profile": {"id": profile.id}}).to_string();
    assert_eq!(code(post("Bearer forged", &id)).0, 401);
    let bearer = format!("Bearer {}", identity_token(&fake));
    assert_eq!(
        code(post(&bearer, r#"{"trusted_profile":{"id":"Profile-x"}}"#)).0,
        404
    );
    let k8s_only = TrustedProfile::new("k8s-only", ACCOUNT, &[SA]);
    fake.add_profile(k8s_only.clone());
    let other = json!({"trusted_profile": {"id": k8s_only.id}}).to_string();
    assert_eq!(code(post(&bearer, &other)).0, 403);
    let both = json!({"trusted_profile": {"id": profile.id, "crn": profile.crn}}).to_string();
    assert_eq!(code(post(&bearer, &both)).0, 400);
    assert_eq!(fake.stats().vpc_iam_tokens, 0);
    // Injected faults answer in the metadata error shape.
    fake.inject(Fault::new("/instance_identity", FaultKind::Status(503), 1));
    let reply = put(
        "/instance_identity/v1/token?version=2022-03-01",
        &flavor,
        "{}",
    );
    assert_eq!(code(reply), (503, "injected_fault".to_string()));
}

#[test]
fn config_endpoint_takes_profiles_and_session_lifetimes() {
    let fake = server();
    let body = json!({
        "profiles": {"ci-pull": {"account": ACCOUNT, "subjects": [SA]}},
        "vpc_default_profile": null,
        "refresh_lifetime": 60
    });
    let reply = http(&fake, "POST", "/_fake/config", &[], &body.to_string());
    assert_eq!(reply.status, 200, "{:?}", reply.json());
    let token = fake.cr_token(K8S, SA, 600);
    let profile = TrustedProfile::new("ci-pull", ACCOUNT, &[SA]);
    assert_eq!(
        cr_grant(&fake, &token, "profile_id", &profile.id).status,
        200
    );
    let bad = json!({"profiles": {"x": {"account": ACCOUNT}}});
    assert_eq!(
        http(&fake, "POST", "/_fake/config", &[], &bad.to_string()).status,
        400
    );
    let stats = http(&fake, "GET", "/_fake/stats", &[], "").json();
    assert_eq!(stats["iam_mints_by_grant"]["cr-token"], 1);
    assert_eq!(stats["metadata_requests"], 0);
}

//! One parse of what a client sent, shared by every detector: parameters
//! from the query, a form or a JSON body (bounded), the bearer token, and
//! the credentials of a login attempt.

use super::jwt::{bearer_token, Jwt};
use crate::exchange::{Exchange, Request, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

/// Request bodies larger than this are not parsed for parameters.
const MAX_PARSED_BODY_BYTES: usize = 256 * 1024;
/// Parameters kept per request; the rest are not inspected (counted).
const MAX_PARAMS: usize = 512;
/// JSON nesting followed when collecting parameters.
const MAX_JSON_DEPTH: usize = 32;

/// Where a parameter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamSource {
    Query,
    Form,
    Json,
    Path,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub source: ParamSource,
    /// Name, or JSON path (`user.roles[]`); a path segment's index for `Path`.
    pub name: String,
    pub value: String,
}

/// Username and password of a login attempt. The password itself is never
/// kept: only a keyed hash, enough to see one password tried on many users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAttempt {
    pub username: String,
    pub password_hash: [u8; 16],
}

pub struct RequestView<'a> {
    pub exchange: &'a Exchange,
    pub request: &'a Request,
    pub response: Option<&'a Response>,
    pub params: Vec<Param>,
    /// Parameters beyond `MAX_PARAMS` or in bodies too large to parse.
    pub params_skipped: u64,
    pub json: Option<Value>,
    pub bearer: Option<Jwt>,
    /// User of `Authorization: Basic`.
    pub basic_user: Option<String>,
    pub login: Option<LoginAttempt>,
}

impl<'a> RequestView<'a> {
    /// `None` for an exchange without a request (a response seen alone).
    pub fn new(exchange: &'a Exchange) -> Option<RequestView<'a>> {
        let request = exchange.request.as_ref()?;
        let mut view = RequestView {
            exchange,
            request,
            response: exchange.response.as_ref(),
            params: Vec::new(),
            params_skipped: 0,
            json: None,
            bearer: None,
            basic_user: None,
            login: None,
        };
        view.collect_query();
        view.collect_path();
        view.collect_body();
        if let Some(auth) = request.headers.get("authorization") {
            view.bearer = bearer_token(auth).and_then(Jwt::decode);
            view.basic_user = basic_user(auth);
        }
        view.login = view.login_attempt();
        Some(view)
    }

    /// The Host the request named (lower case, without port), else the
    /// server address.
    pub fn host(&self) -> String {
        self.request
            .host
            .as_deref()
            .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase())
            .unwrap_or_else(|| self.exchange.server.ip().to_string())
    }

    pub fn status(&self) -> Option<u16> {
        self.response.and_then(|r| r.status)
    }

    pub fn succeeded(&self) -> bool {
        self.status().is_some_and(|s| (200..300).contains(&s))
    }

    fn push(&mut self, source: ParamSource, name: String, value: String) {
        if self.params.len() >= MAX_PARAMS {
            self.params_skipped += 1;
            return;
        }
        self.params.push(Param {
            source,
            name,
            value,
        });
    }

    fn collect_query(&mut self) {
        let uri = self.request.uri.as_str();
        let Some((_, query)) = uri.split_once('?') else {
            return;
        };
        let query = query.split('#').next().unwrap_or_default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            self.push(ParamSource::Query, name.into_owned(), value.into_owned());
        }
    }

    fn collect_path(&mut self) {
        // The raw target: decoding it is the payload scanner's job, and
        // `../` collapsed by a decoder would hide traversal.
        let raw = self.request.uri.as_str();
        let path = raw.split(['?', '#']).next().unwrap_or_default();
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        // The whole path too, so multi-segment payloads (`../../etc`) are seen.
        if segments.len() > 1 {
            self.push(ParamSource::Path, "path".into(), path.to_owned());
        }
        for (i, segment) in segments.into_iter().enumerate() {
            self.push(ParamSource::Path, i.to_string(), segment);
        }
    }

    fn collect_body(&mut self) {
        let body = &self.request.body;
        if body.data.is_empty() {
            return;
        }
        if body.data.len() > MAX_PARSED_BODY_BYTES {
            self.params_skipped += 1;
            return;
        }
        let content_type = self
            .request
            .content_type
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.contains("json") || body.data.first() == Some(&b'{') {
            if let Ok(value) = serde_json::from_slice::<Value>(&body.data) {
                let mut found = Vec::new();
                json_params(&value, &mut String::new(), 0, &mut found);
                for (name, value) in found {
                    self.push(ParamSource::Json, name, value);
                }
                self.json = Some(value);
            }
        } else if content_type.contains("x-www-form-urlencoded") {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(&body.data)
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            for (name, value) in pairs {
                self.push(ParamSource::Form, name, value);
            }
        }
    }

    /// The first parameter (query, form or top-level JSON) named like one of `names`.
    pub fn param(&self, names: &[&str]) -> Option<&str> {
        self.params
            .iter()
            .filter(|p| p.source != ParamSource::Path)
            .find(|p| {
                let leaf = p.name.rsplit('.').next().unwrap_or(&p.name);
                names.iter().any(|n| leaf.eq_ignore_ascii_case(n))
            })
            .map(|p| p.value.as_str())
    }

    /// A login attempt: a password-like field next to a user-like one, or
    /// Basic credentials sent to a login-looking path.
    fn login_attempt(&self) -> Option<LoginAttempt> {
        let password = self.param(&["password", "passwd", "pwd", "pass", "passphrase"]);
        let username = self.param(&[
            "username",
            "user",
            "email",
            "login",
            "user_name",
            "userName",
            "account",
            "userid",
        ]);
        if let (Some(user), Some(password)) = (username, password) {
            return Some(LoginAttempt {
                username: user.trim().to_lowercase(),
                password_hash: password_hash(password),
            });
        }
        let auth = self.request.headers.get("authorization")?;
        let (user, password) = basic_credentials(auth)?;
        let path = self.request.path.to_ascii_lowercase();
        let loginish = ["login", "signin", "sign-in", "auth", "token", "session"]
            .iter()
            .any(|w| path.contains(w));
        loginish.then(|| LoginAttempt {
            username: user.to_lowercase(),
            password_hash: password_hash(&password),
        })
    }
}

fn json_params(value: &Value, path: &mut String, depth: usize, out: &mut Vec<(String, String)>) {
    if depth > MAX_JSON_DEPTH || out.len() >= MAX_PARAMS {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                // Keys are client-controlled too (`{"$ne": …}`).
                if key.starts_with('$') {
                    out.push((path.clone(), key.clone()));
                }
                json_params(child, path, depth + 1, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            let len = path.len();
            path.push_str("[]");
            for item in items {
                json_params(item, path, depth + 1, out);
            }
            path.truncate(len);
        }
        Value::String(s) => out.push((path.clone(), s.clone())),
        Value::Number(n) => out.push((path.clone(), n.to_string())),
        Value::Bool(b) => out.push((path.clone(), b.to_string())),
        Value::Null => {}
    }
}

fn basic_credentials(authorization: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(authorization).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8_lossy(&decoded);
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn basic_user(authorization: &[u8]) -> Option<String> {
    basic_credentials(authorization).map(|(user, _)| user)
}

fn password_hash(password: &str) -> [u8; 16] {
    let hash = blake3::Hasher::new_derive_key("apisensor login password v1")
        .update(password.as_bytes())
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(hash.as_bytes().get(..16).unwrap_or(&[0u8; 16]));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::exchange::{Body, Headers, HttpVersion, Timestamp};

    /// An exchange for detector tests: `headers` as (name, value) pairs.
    #[allow(clippy::too_many_arguments)]
    pub fn exchange(
        client: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &str,
        status: u16,
        response_body: &str,
        secs: u64,
    ) -> Exchange {
        let mut request_headers = Headers::with_capacity(8, 256);
        for (n, v) in headers {
            request_headers.push(n.as_bytes(), v.as_bytes(), 64, 1 << 16);
        }
        let content_type = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| (*v).into());
        let path = uri.split('?').next().unwrap_or_default();
        Exchange {
            flow_id: secs,
            client: format!("{client}:40000").parse().unwrap(),
            server: "10.9.9.9:80".parse().unwrap(),
            request: Some(Request {
                ts: Timestamp::from_secs_nanos(secs, 0),
                end_ts: Timestamp::from_secs_nanos(secs, 0),
                method: method.into(),
                uri: uri.into(),
                path: path.into(),
                query: uri.split_once('?').map(|(_, q)| q.into()),
                version: HttpVersion::Http11,
                host: Some("api.test".into()),
                content_type,
                headers: request_headers,
                body: Body {
                    wire_len: body.len() as u64,
                    decoded_len: body.len() as u64,
                    data: body.as_bytes().to_vec(),
                    ..Body::default()
                },
                pending_text: false,
            }),
            response: (status != 0).then(|| Response {
                ts: Timestamp::from_secs_nanos(secs, 1000),
                end_ts: Timestamp::from_secs_nanos(secs, 2000),
                version: HttpVersion::Http11,
                status: Some(status),
                reason: "".into(),
                content_type: Some("application/json".into()),
                headers: Headers::with_capacity(0, 0),
                body: Body {
                    wire_len: response_body.len() as u64,
                    decoded_len: response_body.len() as u64,
                    data: response_body.as_bytes().to_vec(),
                    ..Body::default()
                },
                pending_text: false,
            }),
            tunnel: false,
            flags: Default::default(),
            anomalies: Vec::new(),
        }
    }

    #[test]
    fn params_from_query_path_form_and_json() {
        let e = exchange(
            "10.0.0.1",
            "POST",
            "/a/b%2Fc?q=x%20y&n=1",
            &[("Content-Type", "application/json")],
            r#"{"user":{"name":"n","tags":["t1"],"$where":"1"},"k":2}"#,
            200,
            "",
            1,
        );
        let v = RequestView::new(&e).unwrap();
        let got: Vec<(ParamSource, &str, &str)> = v
            .params
            .iter()
            .map(|p| (p.source, p.name.as_str(), p.value.as_str()))
            .collect();
        assert!(got.contains(&(ParamSource::Query, "q", "x y")));
        assert!(got.contains(&(ParamSource::Path, "1", "b%2Fc")));
        assert!(got.contains(&(ParamSource::Json, "user.tags[]", "t1")));
        assert!(got.contains(&(ParamSource::Json, "user.$where", "$where")));
        assert!(got.contains(&(ParamSource::Json, "k", "2")));
    }

    #[test]
    fn login_attempts_from_json_form_and_basic() {
        let json = exchange(
            "10.0.0.1",
            "POST",
            "/api/login",
            &[("Content-Type", "application/json")],
            r#"{"username":"Alice","password":"hunter2"}"#,
            200,
            "",
            1,
        );
        let form = exchange(
            "10.0.0.1",
            "POST",
            "/signin",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            "email=alice&pwd=hunter2",
            200,
            "",
            1,
        );
        let a = RequestView::new(&json).unwrap().login.unwrap();
        let b = RequestView::new(&form).unwrap().login.unwrap();
        assert_eq!(a.username, "alice");
        assert_eq!(a, b, "same user and password, whatever the encoding");
        let basic = exchange(
            "10.0.0.1",
            "GET",
            "/auth/token",
            &[("Authorization", "Basic Ym9iOnNlY3JldA==")],
            "",
            401,
            "",
            1,
        );
        let v = RequestView::new(&basic).unwrap();
        assert_eq!(v.basic_user.as_deref(), Some("bob"));
        assert_eq!(v.login.unwrap().username, "bob");
        let no_login = exchange("10.0.0.1", "POST", "/api/items", &[], "{}", 200, "", 1);
        assert!(RequestView::new(&no_login).unwrap().login.is_none());
    }
}

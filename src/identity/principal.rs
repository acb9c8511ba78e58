//! Who a request acts for. The principal of a JWT is the claim this API uses
//! for its users, learned from the tokens seen rather than assumed to be
//! `sub` (Flask-JWT-Extended wrote `identity`, Django REST framework's
//! simple-jwt writes `user_id`, others `username` or `email`, and some put a
//! constant in `sub`). Basic credentials name their user; API keys,
//! sessions and opaque tokens are principals by keyed digest.
//!
//! A principal also goes by names: the username and email claims of its
//! token, its Basic user, and the username it logged in with (learned when
//! a login answer hands out the credential the principal then uses). That
//! is what lets a self-service endpoint (`/users/{u}/...`) be checked: a
//! caller naming itself uses one of its own names.

use super::credentials::{Credential, CredentialKind, Credentials};
use crate::jwt::Jwt;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Claims that may name a user, in the order they are preferred when the
/// tokens seen do not yet tell them apart.
pub const PRINCIPAL_CLAIMS: &[&str] = &[
    "sub",
    "identity",
    "user_id",
    "userId",
    "uid",
    "username",
    "preferred_username",
    "user",
    "email",
    "login",
    "id",
    "name",
];

/// Claims whose values are names a user goes by.
const NAME_CLAIMS: &[&str] = &[
    "username",
    "preferred_username",
    "user",
    "login",
    "email",
    "name",
    "nickname",
    "handle",
];

/// Distinct values remembered per candidate claim: enough to tell a claim
/// that varies between users from a constant.
const MAX_VALUES_PER_CLAIM: usize = 16;
/// Tokens a claim must be in (share) to be chosen.
const CLAIM_PRESENCE_PERCENT: u64 = 80;
/// Credential digests remembered with the login name that obtained them.
const MAX_LOGIN_NAMES: usize = 100_000;

/// How a principal was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A claim of a JWT (the value of the learned principal claim).
    Jwt,
    BasicUser,
    /// Keyed digest of an API key.
    ApiKey,
    /// Keyed digest of a session identifier.
    Session,
    /// Keyed digest of an opaque token.
    Token,
}

impl PrincipalKind {
    /// The event schema's `principal_kind`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Jwt => "jwt_claim",
            PrincipalKind::BasicUser => "basic_user",
            PrincipalKind::ApiKey => "api_key_hash",
            PrincipalKind::Session => "session_hash",
            PrincipalKind::Token => "token_hash",
        }
    }
}

/// Who a request acts for, and the names it goes by (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub kind: PrincipalKind,
    pub names: Vec<String>,
}

impl Principal {
    /// Whether `value` (a path segment, a parameter) names this principal.
    pub fn is_named(&self, value: &str) -> bool {
        let v = value.trim();
        !v.is_empty()
            && (v.eq_ignore_ascii_case(&self.id)
                || self.names.iter().any(|n| n.eq_ignore_ascii_case(v)))
    }
}

/// Per candidate claim: tokens it was in, and some of its values.
#[derive(Debug, Clone, Default)]
struct ClaimSeen {
    tokens: u64,
    values: Vec<String>,
}

/// What the tokens of one API say about its principal claim.
#[derive(Debug, Clone, Default)]
struct ClaimLearner {
    tokens: u64,
    claims: BTreeMap<&'static str, ClaimSeen>,
}

impl ClaimLearner {
    fn observe(&mut self, jwt: &Jwt) {
        self.tokens += 1;
        for &claim in PRINCIPAL_CLAIMS {
            let Some(value) = claim_text(jwt, claim) else {
                continue;
            };
            let seen = self.claims.entry(claim).or_default();
            seen.tokens += 1;
            if seen.values.len() < MAX_VALUES_PER_CLAIM && !seen.values.contains(&value) {
                seen.values.push(value);
            }
        }
    }

    /// The claim that names users: among claims present in most tokens, the
    /// first (in preference order) whose value varies between tokens; while
    /// no claim has varied yet (one user so far), the first present one.
    fn chosen(&self, jwt: &Jwt) -> Option<&'static str> {
        let common = |seen: &ClaimSeen| seen.tokens * 100 >= self.tokens * CLAIM_PRESENCE_PERCENT;
        let varying = PRINCIPAL_CLAIMS.iter().copied().find(|c| {
            self.claims
                .get(c)
                .is_some_and(|s| common(s) && s.values.len() >= 2)
                && jwt.claims.contains_key(*c)
        });
        varying.or_else(|| {
            PRINCIPAL_CLAIMS
                .iter()
                .copied()
                .find(|c| claim_text(jwt, c).is_some())
        })
    }
}

/// A claim as text: strings as they are, numbers written out.
fn claim_text(jwt: &Jwt, claim: &str) -> Option<String> {
    match jwt.claims.get(claim)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What the sensor learned about the principals of the APIs it watches:
/// each API's principal claim, and the login names credentials were
/// obtained with. Bounded: hosts and remembered credentials are capped.
#[derive(Debug, Default)]
pub struct IdentityBook {
    claims: HashMap<String, ClaimLearner>,
    /// Credential digest -> the username its login used.
    login_names: HashMap<[u8; 16], String>,
    /// Hosts not given a learner of their own (past the cap): they share
    /// the default one.
    pub hosts_capped: u64,
    /// Login names forgotten when the table was full (it is then emptied).
    pub login_names_reset: u64,
    /// Digests of session cookies the API set for visitors without
    /// credentials (Flask, Django and Rails give every visitor a session):
    /// presenting one proves no identity until a login upgrades it.
    anonymous_sessions: HashSet<[u8; 16]>,
    /// Times that set was full and emptied.
    pub anonymous_sessions_reset: u64,
}

/// Hosts whose principal claims are learned separately.
const MAX_CLAIM_HOSTS: usize = 256;
/// Anonymous visitors' session cookies remembered.
const MAX_ANONYMOUS_SESSIONS: usize = 100_000;

impl IdentityBook {
    /// The principal of a request to `host` with `credentials`, learning
    /// from its JWT as it goes.
    pub fn identify(&mut self, host: &str, credentials: &Credentials) -> Option<Principal> {
        if let Some(jwt) = &credentials.jwt {
            let learner = if self.claims.contains_key(host) || self.claims.len() < MAX_CLAIM_HOSTS {
                self.claims.entry(host.to_owned()).or_default()
            } else {
                self.hosts_capped += 1;
                self.claims.entry(String::new()).or_default()
            };
            learner.observe(jwt);
            if let Some(claim) = learner.chosen(jwt) {
                let id = claim_text(jwt, claim).unwrap_or_default();
                let mut names: Vec<String> = NAME_CLAIMS
                    .iter()
                    .filter_map(|c| claim_text(jwt, c))
                    .map(|n| n.to_lowercase())
                    .collect();
                if let Some(name) = credentials
                    .jwt_digest
                    .and_then(|d| self.login_names.get(&d))
                {
                    names.push(name.clone());
                }
                names.sort();
                names.dedup();
                return Some(Principal {
                    id,
                    kind: PrincipalKind::Jwt,
                    names,
                });
            }
        }
        if let Some(user) = &credentials.basic_user {
            return Some(Principal {
                id: user.clone(),
                kind: PrincipalKind::BasicUser,
                names: vec![user.to_lowercase()],
            });
        }
        let credential = credentials
            .found
            .iter()
            .find(|c| c.kind != CredentialKind::Jwt && c.kind != CredentialKind::Basic)?;
        let kind = match credential.kind {
            CredentialKind::ApiKey => PrincipalKind::ApiKey,
            CredentialKind::Session => PrincipalKind::Session,
            _ => PrincipalKind::Token,
        };
        let names = self
            .login_names
            .get(&credential.digest)
            .map(|n| vec![n.clone()])
            .unwrap_or_default();
        Some(Principal {
            id: hex(credential.digest.get(..8).unwrap_or_default()),
            kind,
            names,
        })
    }

    /// Takes out the credentials when they are only an anonymous
    /// visitor's session cookies (the request is anonymous) and returns
    /// them; usually nothing.
    pub fn take_anonymous_sessions(&self, credentials: &mut Credentials) -> Vec<Credential> {
        let anonymous = |c: &Credential| {
            c.kind == CredentialKind::Session && self.anonymous_sessions.contains(&c.digest)
        };
        if !credentials.found.is_empty() && credentials.found.iter().all(anonymous) {
            std::mem::take(&mut credentials.found)
        } else {
            Vec::new()
        }
    }

    /// The API set these session cookies for a visitor without credentials
    /// (not at a login).
    pub fn note_anonymous_sessions(&mut self, digests: &[[u8; 16]]) {
        if self.anonymous_sessions.len() + digests.len() > MAX_ANONYMOUS_SESSIONS {
            self.anonymous_sessions.clear();
            self.anonymous_sessions_reset += 1;
        }
        self.anonymous_sessions.extend(digests.iter().copied());
    }

    /// A login succeeded with these sessions: they may now carry the
    /// identity (frameworks that do not rotate the session at login).
    pub fn sessions_logged_in(&mut self, sessions: &[Credential]) {
        for c in sessions {
            self.anonymous_sessions.remove(&c.digest);
        }
    }

    /// A login by `username` handed out credentials with these digests
    /// (tokens in the answer's body, cookies it set): requests that present
    /// them act for that username.
    pub fn learn_login(&mut self, username: &str, issued: &[[u8; 16]]) {
        if self.login_names.len() + issued.len() > MAX_LOGIN_NAMES {
            self.login_names.clear();
            self.login_names_reset += 1;
        }
        for digest in issued {
            self.login_names.insert(*digest, username.to_lowercase());
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::super::credentials::{read, tests::request};
    use super::super::SecretHasher;
    use super::*;
    use crate::jwt::sign_hs256;
    use serde_json::json;

    fn bearer(claims: serde_json::Value) -> String {
        format!(
            "Bearer {}",
            sign_hs256(&json!({"alg":"HS256"}), &claims, "k")
        )
    }

    fn principal(book: &mut IdentityBook, hasher: &SecretHasher, auth: &str) -> Principal {
        let c = read(&request(&[("Authorization", auth)], None), hasher);
        book.identify("api", &c).unwrap()
    }

    #[test]
    fn the_principal_claim_is_learned_not_assumed() {
        let hasher = SecretHasher::default();
        let mut book = IdentityBook::default();
        // `sub` is a constant here ("access"); `user_id` names the users.
        let token = |id: u64| bearer(json!({"sub": "access", "user_id": id, "exp": 1}));
        let first = principal(&mut book, &hasher, &token(7));
        assert_eq!(first.id, "access", "one user so far: the preferred claim");
        let second = principal(&mut book, &hasher, &token(8));
        assert_eq!(second.id, "8");
        assert_eq!(principal(&mut book, &hasher, &token(7)).id, "7");
        // Flask-JWT-Extended's `identity`.
        let mut book = IdentityBook::default();
        for user in ["ann", "bo", "cy"] {
            let p = principal(
                &mut book,
                &hasher,
                &bearer(json!({"identity": user, "type": "access"})),
            );
            assert_eq!(p.id, user);
        }
    }

    #[test]
    fn names_come_from_claims_basic_and_logins() {
        let hasher = SecretHasher::default();
        let mut book = IdentityBook::default();
        let p = principal(
            &mut book,
            &hasher,
            &bearer(json!({"sub": "42", "username": "Alice", "email": "a@x.io"})),
        );
        assert!(p.is_named("alice") && p.is_named("a@x.io") && p.is_named("42"));
        assert!(!p.is_named("bob"));
        let basic = principal(&mut book, &hasher, "Basic Ym9iOnNlY3JldA==");
        assert_eq!(
            (basic.id.as_str(), basic.kind),
            ("bob", PrincipalKind::BasicUser)
        );
        // A session handed out by bob's login acts for bob.
        let c = read(&request(&[("Cookie", "sessionid=s3ss")], None), &hasher);
        book.learn_login("Bob", &[c.found[0].digest]);
        let s = book.identify("api", &c).unwrap();
        assert_eq!(s.kind, PrincipalKind::Session);
        assert!(s.is_named("bob"));
        assert!(!s.id.contains("s3ss"));
    }

    #[test]
    fn anonymous_requests_have_no_principal() {
        let mut book = IdentityBook::default();
        let c = read(
            &request(&[("Accept", "*/*")], None),
            &SecretHasher::default(),
        );
        assert!(book.identify("api", &c).is_none());
    }
}

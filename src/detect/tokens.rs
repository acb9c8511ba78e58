//! JSON Web Tokens the API accepted but should not have, and forgery
//! attempts it refused. Accepted: unsigned (`alg: none`), expired (only on
//! endpoints shown to check credentials, with a few seconds of clock skew:
//! an expired token sent to a public endpoint that ignores it is no
//! alarm), signed with a guessable secret, or unlike every token the API
//! was seen issuing (another algorithm, header, claim set or lifetime) —
//! forged tokens need not carry roles. Refused: a client presenting
//! unsigned, weak-key or foreign-shaped tokens, or other principals'
//! tokens, is trying to forge an identity even when the API holds.

use super::report::Finding;
use super::rules::RuleId;
use super::scanner::trim;
use crate::analysis::facts::Facts;
use crate::baseline::learned::Baselines;
use crate::event::Severity;
use crate::jwt::Jwt;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

/// Seconds of clock skew allowed on `exp`.
const CLOCK_SKEW_SECS: u64 = 5;
/// Issued tokens needed before a profile judges others.
const MIN_ISSUED: u64 = 3;
/// Shapes remembered per issuer.
const MAX_SHAPES: usize = 8;
/// Window of refused forgery attempts per client.
const ATTEMPT_WINDOW_SECS: u64 = 600;
/// Refused suspicious tokens (or distinct principals) per client in the window.
const MIN_ATTEMPTS: usize = 2;
/// Issuers (hosts) profiled; clients tracked for attempts.
const MAX_ISSUERS: usize = 256;
const MAX_CLIENTS: usize = 100_000;

/// What a token looks like to its issuer: algorithm, header names, claim
/// names and lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    alg: String,
    header: BTreeSet<String>,
    claims: BTreeSet<String>,
    lifetime: Option<u64>,
}

impl Shape {
    fn of(jwt: &Jwt) -> Shape {
        let lifetime = match (jwt.expires_at(), claim_u64(jwt, "iat")) {
            (Some(exp), Some(iat)) => Some(exp.saturating_sub(iat)),
            _ => None,
        };
        Shape {
            alg: jwt.alg().to_ascii_uppercase(),
            header: jwt.header.keys().cloned().collect(),
            claims: jwt.claims.keys().cloned().collect(),
            lifetime,
        }
    }

    /// How `self` (a presented token) differs from an issued shape.
    fn differences(&self, issued: &Shape) -> Vec<&'static str> {
        let mut d = Vec::new();
        if self.alg != issued.alg {
            d.push("algorithm");
        }
        if self.header != issued.header {
            d.push("header");
        }
        if self.claims != issued.claims {
            d.push("claims");
        }
        // Lifetimes within a tenth (or 60 s) of each other are one policy.
        if let (Some(a), Some(b)) = (self.lifetime, issued.lifetime) {
            if a.abs_diff(b) > (b / 10).max(60) {
                d.push("lifetime");
            }
        }
        d
    }
}

fn claim_u64(jwt: &Jwt, name: &str) -> Option<u64> {
    jwt.claims.get(name).and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
    })
}

#[derive(Debug, Default)]
struct Issuer {
    issued: u64,
    shapes: Vec<Shape>,
    digests: BTreeSet<[u8; 16]>,
}

#[derive(Debug, Default)]
struct Attempts {
    suspicious: VecDeque<(u64, [u8; 16])>,
    principals: VecDeque<(u64, String)>,
}

/// Token state.
#[derive(Debug, Default)]
pub struct Tokens {
    issuers: HashMap<String, Issuer>,
    /// Verdicts of the weak-secret check, per token digest (each checked once).
    weak: HashMap<[u8; 16], Option<&'static str>>,
    attempts: HashMap<IpAddr, Attempts>,
    pub refused: u64,
}

impl Tokens {
    pub fn observe(&mut self, f: &Facts<'_>, baselines: &Baselines, out: &mut Vec<Finding>) {
        self.learn_issued(f);
        let (Some(jwt), Some(digest)) = (f.jwt(), f.credentials.jwt_digest) else {
            return;
        };
        let host = f.key.host.to_string();
        let weak = self.weak_secret(digest, jwt);
        let shape = Shape::of(jwt);
        let issuer = self.issuers.get(&host);
        let unlike: Option<Vec<&'static str>> = issuer
            .filter(|i| i.issued >= MIN_ISSUED && !i.digests.contains(&digest))
            .and_then(|i| {
                let closest = i
                    .shapes
                    .iter()
                    .map(|s| shape.differences(s))
                    .min_by_key(Vec::len)?;
                (!closest.is_empty()).then_some(closest)
            });
        let expired_for = jwt
            .expires_at()
            .filter(|exp| exp.saturating_add(CLOCK_SKEW_SECS) < f.now)
            .map(|exp| f.now.saturating_sub(exp));
        let status = f.status().unwrap_or(0);
        if f.succeeded() {
            let subject = format!("{host}|{}", f.who);
            if jwt.is_unsigned() {
                out.push(Finding::new(
                    RuleId::JwtAlgNoneAccepted,
                    95,
                    format!(
                        "{} called {} with a JWT whose header says `alg: {}` (no signature), and the API answered {status}.",
                        f.actor_label(), f.key, jwt.alg()
                    ),
                    subject.clone(),
                ));
            }
            let checks = baselines.endpoint(&f.key).is_some_and(|e| {
                e.checks_credentials()
                    || e.requires_credentials()
                    || e.always_credentialed(&baselines.limits, f.now)
            });
            if let (Some(expired_for), true) = (expired_for, checks) {
                out.push(
                    Finding::new(
                        RuleId::JwtExpiredAccepted,
                        90,
                        format!(
                            "{} called {} with a JWT that had expired {expired_for} seconds earlier, and the API answered {status}; the endpoint refuses bad credentials otherwise.",
                            f.actor_label(), f.key
                        ),
                        subject.clone(),
                    )
                    .counts(&[("expired_for_secs", expired_for)]),
                );
            }
            if let Some(secret) = weak {
                out.push(Finding::new(
                    RuleId::JwtWeakSecret,
                    99,
                    format!(
                        "{} called {} with an HS256 JWT whose signature verifies with the well-known secret {secret:?}, and the API answered {status}.",
                        f.actor_label(), f.key
                    ),
                    host.clone(),
                ));
            }
            if let Some(differences) = &unlike {
                let issued = issuer.map_or(0, |i| i.issued);
                out.push(
                    Finding::new(
                        RuleId::JwtForgedAccepted,
                        75,
                        format!(
                            "{} called {} with a token the API never issued, whose {} differ from all {issued} tokens it was seen issuing; the API answered {status}.",
                            f.actor_label(), f.key, differences.join(", ")
                        ),
                        subject,
                    )
                    .attribute("differences", serde_json::json!(differences)),
                );
            }
            return;
        }
        if !f.rejected() {
            return;
        }
        // Refused: a forgery attempt when the token is unsigned, weak,
        // unlike what the API issues, or one of several principals' tokens
        // this client presents.
        let suspicious = jwt.is_unsigned() || weak.is_some() || unlike.is_some();
        if !self.attempts.contains_key(&f.client_ip) && self.attempts.len() >= MAX_CLIENTS {
            self.refused += 1;
            return;
        }
        let a = self.attempts.entry(f.client_ip).or_default();
        if suspicious && a.suspicious.iter().all(|(_, d)| *d != digest) {
            a.suspicious.push_back((f.now, digest));
        }
        if let Some(p) = &f.principal {
            if expired_for.is_some() && a.principals.iter().all(|(_, q)| *q != p.id) {
                a.principals.push_back((f.now, p.id.clone()));
            }
        }
        trim(&mut a.suspicious, f.now, ATTEMPT_WINDOW_SECS, |(t, _)| *t);
        trim(&mut a.principals, f.now, ATTEMPT_WINDOW_SECS, |(t, _)| *t);
        let (forged, replayed) = (a.suspicious.len(), a.principals.len());
        if forged >= MIN_ATTEMPTS || replayed >= MIN_ATTEMPTS {
            let what = if forged >= MIN_ATTEMPTS {
                format!(
                    "{} presented {forged} forged tokens (unsigned, signed with a guessable key, or unlike the tokens the API issues) within {ATTEMPT_WINDOW_SECS} seconds; the API refused them ({status}).",
                    f.actor_label()
                )
            } else {
                format!(
                    "{} presented expired tokens of {replayed} different principals within {ATTEMPT_WINDOW_SECS} seconds (stolen tokens replayed); the API refused them ({status}).",
                    f.actor_label()
                )
            };
            out.push(
                Finding::new(
                    RuleId::JwtForgeryAttempts,
                    80,
                    what,
                    f.client_ip.to_string(),
                )
                .severity(Severity::Medium)
                .counts(&[
                    ("forged_tokens", forged as u64),
                    ("principals", replayed as u64),
                ]),
            );
        }
    }

    fn learn_issued(&mut self, f: &Facts<'_>) {
        if f.issued.jwts.is_empty() {
            return;
        }
        let host = f.key.host.to_string();
        if !self.issuers.contains_key(&host) && self.issuers.len() >= MAX_ISSUERS {
            self.refused += 1;
            return;
        }
        let issuer = self.issuers.entry(host).or_default();
        for (jwt, digest) in &f.issued.jwts {
            issuer.issued += 1;
            if issuer.digests.len() < 1_000_000 {
                issuer.digests.insert(*digest);
            }
            let shape = Shape::of(jwt);
            if !issuer.shapes.contains(&shape) && issuer.shapes.len() < MAX_SHAPES {
                issuer.shapes.push(shape);
            }
        }
    }

    /// The weak secret an HS256 token verifies with; each token checked once.
    fn weak_secret(&mut self, digest: [u8; 16], jwt: &Jwt) -> Option<&'static str> {
        if self.weak.len() > 100_000 {
            self.weak.clear();
        }
        *self
            .weak
            .entry(digest)
            .or_insert_with(|| jwt.weak_hs256_secret())
    }

    pub fn sweep(&mut self, now: u64) {
        self.attempts.retain(|_, a| {
            let recent = |t: u64| now.saturating_sub(t) <= ATTEMPT_WINDOW_SECS;
            a.suspicious.back().is_some_and(|(t, _)| recent(*t))
                || a.principals.back().is_some_and(|(t, _)| recent(*t))
        });
        crate::baseline::learned::shrink(&mut self.attempts);
    }
}

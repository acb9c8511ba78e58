//! JSON Web Tokens the API accepted but should not have, and forgery
//! attempts it refused. The verdicts come from `identity::tokens`, which
//! learns what the API issues (algorithm, header, claims, lifetime, clock)
//! and checks signatures against the public wordlist of JWT secrets; this
//! family decides which verdicts are findings:
//!
//! - accepted (2xx) on an endpoint that enforces tokens (shown to reject
//!   bad ones or to require credentials, or always called with them): an
//!   unsigned token, an expired one, one signed with a wordlist secret, or
//!   one with strong signs of forgery (tampered payload, replaced
//!   signature, claims, header, algorithm or lifetime the API never
//!   issues). An endpoint that ignores the token it is sent raises nothing;
//! - the API's own signing key in the wordlist, from the first token it
//!   issues;
//! - refused: a client presenting several forged tokens, or expired tokens
//!   of several principals (stolen tokens replayed), is trying to forge an
//!   identity even when the API holds (lower severity).

use super::report::Finding;
use super::rules::RuleId;
use super::scanner::trim;
use crate::analysis::facts::Facts;
use crate::baseline::learned::Baselines;
use crate::event::Severity;
use crate::identity::tokens::{
    Enforcement, PresentedCredential, Provenance, Suspicion, TokenChecking, TokenCounters,
    TokenJudgement, TokenSettings, Tokens as Profiles, Validity, WeakSecretCheck,
};
use crate::identity::SecretHasher;
use crate::inventory::EndpointKey;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Window of refused forgery attempts per client.
const ATTEMPT_WINDOW_SECS: u64 = 600;
/// Refused forged tokens (or distinct principals' expired tokens) per
/// client in the window.
const MIN_ATTEMPTS: usize = 2;
/// Clients tracked for attempts; endpoints whose token checking is learned.
const MAX_CLIENTS: usize = 100_000;
const MAX_ENDPOINTS: usize = 10_000;

#[derive(Debug, Default)]
struct Attempts {
    forged: VecDeque<(u64, [u8; 16])>,
    principals: VecDeque<(u64, String)>,
}

/// Token state.
pub struct Tokens {
    profiles: Profiles,
    checking: TokenChecking<EndpointKey>,
    attempts: HashMap<IpAddr, Attempts>,
    pub refused: u64,
}

impl Tokens {
    pub fn new(hasher: SecretHasher) -> Tokens {
        Tokens {
            profiles: Profiles::new(hasher, TokenSettings::default()),
            checking: TokenChecking::new(MAX_ENDPOINTS),
            attempts: HashMap::new(),
            refused: 0,
        }
    }

    pub fn counters(&self) -> TokenCounters {
        self.profiles.counters()
    }

    pub fn endpoints_not_tracked(&self) -> u64 {
        self.checking.endpoints_not_tracked()
    }

    pub fn observe(&mut self, f: &Facts<'_>, baselines: &Baselines, out: &mut Vec<Finding>) {
        let host = f.key.host.as_str();
        for (jwt, _) in &f.issued.jwts {
            let check = self.profiles.learn_issued(host, jwt, f.jwt(), f.now);
            if let WeakSecretCheck::Found {
                secret,
                issuer_key: true,
            } = check
            {
                out.push(
                    Finding::new(
                        RuleId::JwtWeakSecret,
                        99,
                        format!(
                            "{} issued a {} token signed with the publicly listed secret {}: anyone can mint tokens it accepts.",
                            f.key,
                            jwt.alg(),
                            mask(secret)
                        ),
                        host.to_owned(),
                    )
                    .title("API signs its tokens with a publicly known secret".into()),
                );
            }
        }
        let judgement = f.jwt().map(|jwt| self.profiles.judge(host, jwt, f.now));
        let presented = match &judgement {
            Some(j) => PresentedCredential::Token(j.condition()),
            None if f.anonymous() => PresentedCredential::Anonymous,
            None => PresentedCredential::Other,
        };
        let (enforcement, _) = self.checking.enforcement(&f.key);
        if let Some(status) = f.status() {
            self.checking.observe(&f.key, presented, status);
        }
        let Some(judgement) = judgement else {
            return;
        };
        if f.succeeded() {
            let enforced = matches!(
                enforcement,
                Enforcement::ChecksTokens | Enforcement::RequiresCredential
            ) || baselines.endpoint(&f.key).is_some_and(|e| {
                !e.optional_credentials()
                    && (e.checks_credentials()
                        || e.requires_credentials()
                        || e.always_credentialed(&baselines.limits, f.now))
            });
            if enforced {
                accepted(f, &judgement, out);
            }
        } else if f.rejected() {
            self.refused_attempt(f, &judgement, out);
        }
    }

    /// A refused token that is forged, or one of several principals'
    /// expired tokens from one client.
    fn refused_attempt(&mut self, f: &Facts<'_>, j: &TokenJudgement, out: &mut Vec<Finding>) {
        let (Some(digest), true) = (f.credentials.jwt_digest, j.has_strong_reason()) else {
            if !matches!(j.validity, Validity::Expired { .. }) {
                return;
            }
            return self.replayed(f, out);
        };
        let Some(a) = self.window(f.client_ip) else {
            return;
        };
        if a.forged.iter().all(|(_, d)| *d != digest) {
            a.forged.push_back((f.now, digest));
        }
        trim(&mut a.forged, f.now, ATTEMPT_WINDOW_SECS, |(t, _)| *t);
        let forged = a.forged.len();
        if forged >= MIN_ATTEMPTS {
            out.push(
                Finding::new(
                    RuleId::JwtForgeryAttempts,
                    80,
                    format!(
                        "{} presented {forged} forged tokens within {ATTEMPT_WINDOW_SECS} seconds ({}); the API refused them ({}).",
                        f.actor_label(),
                        describe(&j.reasons),
                        f.status().unwrap_or(0)
                    ),
                    f.client_ip.to_string(),
                )
                .severity(Severity::Medium)
                .counts(&[("forged_tokens", forged as u64)])
                .attribute("reasons", serde_json::json!(j.reasons)),
            );
        }
    }

    fn replayed(&mut self, f: &Facts<'_>, out: &mut Vec<Finding>) {
        let Some(p) = f.principal.as_ref().map(|p| p.id.clone()) else {
            return;
        };
        let Some(a) = self.window(f.client_ip) else {
            return;
        };
        if a.principals.iter().all(|(_, q)| *q != p) {
            a.principals.push_back((f.now, p));
        }
        trim(&mut a.principals, f.now, ATTEMPT_WINDOW_SECS, |(t, _)| *t);
        let principals = a.principals.len();
        if principals >= MIN_ATTEMPTS {
            out.push(
                Finding::new(
                    RuleId::JwtForgeryAttempts,
                    75,
                    format!(
                        "{} presented expired tokens of {principals} different principals within {ATTEMPT_WINDOW_SECS} seconds (stolen tokens replayed); the API refused them ({}).",
                        f.actor_label(),
                        f.status().unwrap_or(0)
                    ),
                    f.client_ip.to_string(),
                )
                .severity(Severity::Medium)
                .counts(&[("principals", principals as u64)]),
            );
        }
    }

    fn window(&mut self, ip: IpAddr) -> Option<&mut Attempts> {
        if !self.attempts.contains_key(&ip) && self.attempts.len() >= MAX_CLIENTS {
            self.refused += 1;
            return None;
        }
        Some(self.attempts.entry(ip).or_default())
    }

    pub fn sweep(&mut self, now: u64) {
        self.attempts.retain(|_, a| {
            let recent = |t: u64| now.saturating_sub(t) <= ATTEMPT_WINDOW_SECS;
            a.forged.back().is_some_and(|(t, _)| recent(*t))
                || a.principals.back().is_some_and(|(t, _)| recent(*t))
        });
        crate::baseline::learned::shrink(&mut self.attempts);
    }
}

/// Findings for a token an enforcing endpoint accepted.
fn accepted(f: &Facts<'_>, j: &TokenJudgement, out: &mut Vec<Finding>) {
    let status = f.status().unwrap_or(0);
    let subject = format!("{}|{}", f.key.host, f.who);
    let alg = f.jwt().map_or("", |jwt| jwt.alg());
    if j.reasons
        .iter()
        .any(|r| matches!(r, Suspicion::Unsigned { .. }))
    {
        out.push(Finding::new(
            RuleId::JwtAlgNoneAccepted,
            95,
            format!(
                "{} called {} with a JWT whose header says `alg: {alg}` (no signature), and the API answered {status}.",
                f.actor_label(),
                f.key
            ),
            subject.clone(),
        ));
    }
    if let Validity::Expired { expired_for_secs } = j.validity {
        out.push(
            Finding::new(
                RuleId::JwtExpiredAccepted,
                90,
                format!(
                    "{} called {} with a JWT that had expired {expired_for_secs} seconds earlier, and the API answered {status}; the endpoint otherwise enforces credentials.",
                    f.actor_label(),
                    f.key
                ),
                subject.clone(),
            )
            .counts(&[("expired_for_secs", expired_for_secs)]),
        );
    }
    let weak = j.reasons.iter().find_map(|r| match r {
        Suspicion::WeakSecret { secret, .. } => Some(*secret),
        _ => None,
    });
    if let Some(secret) = weak {
        out.push(Finding::new(
            RuleId::JwtWeakSecret,
            99,
            format!(
                "{} called {} with a {alg} JWT whose signature verifies with the publicly listed secret {}, and the API answered {status}.",
                f.actor_label(),
                f.key,
                mask(secret)
            ),
            f.key.host.to_string(),
        ));
    }
    let forged: Vec<&Suspicion> = j
        .reasons
        .iter()
        .filter(|r| r.is_strong())
        .filter(|r| !matches!(r, Suspicion::Unsigned { .. } | Suspicion::WeakSecret { .. }))
        .collect();
    if j.provenance == Provenance::Suspicious && !forged.is_empty() {
        let reasons: Vec<Suspicion> = forged.iter().map(|r| (*r).clone()).collect();
        out.push(
            Finding::new(
                RuleId::JwtForgedAccepted,
                80,
                format!(
                    "{} called {} with a token the API never issued ({}), and the API answered {status}.",
                    f.actor_label(),
                    f.key,
                    describe(&reasons)
                ),
                subject,
            )
            .attribute("reasons", serde_json::json!(reasons)),
        );
    }
}

/// A secret in event text: enough to recognise it, not to paste it.
fn mask(secret: &str) -> String {
    let shown: String = secret.chars().take(2).collect();
    format!("\"{shown}…\" ({} characters)", secret.chars().count())
}

/// The suspicions in a few words each.
fn describe(reasons: &[Suspicion]) -> String {
    let words: Vec<String> = reasons
        .iter()
        .map(|r| match r {
            Suspicion::Unsigned { .. } => "unsigned".into(),
            Suspicion::WeakSecret { .. } => "signed with a listed secret".into(),
            Suspicion::PayloadTampered => "payload changed under an issued signature".into(),
            Suspicion::SignatureReplaced => "issued payload under another signature".into(),
            Suspicion::AlgDiffers { presented, .. } => {
                format!("algorithm {} the API does not use", presented.as_str())
            }
            Suspicion::HeaderDiffers { extra, missing } => {
                format!("header fields added {extra:?} / missing {missing:?}")
            }
            Suspicion::TypDiffers { presented, .. } => format!("typ {presented:?}"),
            Suspicion::KidUnseen { presented, .. } => format!("unknown kid {presented:?}"),
            Suspicion::ClaimsDiffer { extra, missing, .. } => {
                format!("claims added {extra:?} / missing {missing:?}")
            }
            Suspicion::LifetimeDiffers { presented_secs, .. } => {
                format!("lifetime {presented_secs} s the API does not give")
            }
            Suspicion::IatInFuture { .. } => "issued in the future".into(),
            Suspicion::UnseenWhileWatching { .. } => "never seen issued".into(),
        })
        .collect();
    words.join("; ")
}

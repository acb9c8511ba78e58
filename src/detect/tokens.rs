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
    Enforcement, PresentedCredential, Provenance, Suspicion, TokenChecking, TokenCondition,
    TokenCounters, TokenJudgement, TokenSettings, Tokens as Profiles, Validity, WeakSecretCheck,
};
use crate::identity::SecretHasher;
use crate::inventory::EndpointKey;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

/// Window of refused forgery attempts per client.
const ATTEMPT_WINDOW_SECS: u64 = 600;
/// How long after `exp` JWT libraries accept a token by default: Rust's
/// jsonwebtoken and Spring 60 s, .NET's JwtBearer 5 minutes. An expired
/// token honoured within it is the library's clock-skew allowance.
const LIBRARY_LEEWAY_SECS: u64 = 300;

/// Refused forged tokens (or distinct principals' expired tokens) per
/// client in the window.
const MIN_ATTEMPTS: usize = 2;
/// Seconds before `exp` within which a refusal may be the token's expiry.
const EXPIRING_SECS: u64 = 30;
/// Clients tracked for attempts; endpoints whose token checking is learned.
const MAX_CLIENTS: usize = 100_000;
const MAX_ENDPOINTS: usize = 10_000;
const MAX_REFUSED_TOKENS: usize = 65_536;
/// Forged tokens and principals remembered per client.
const MAX_ATTEMPTS_KEPT: usize = 256;

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
    /// Digests of tokens the API refused (emptied when full).
    refused_tokens: HashSet<[u8; 16]>,
    pub refused: u64,
}

impl Tokens {
    pub fn new(hasher: SecretHasher) -> Tokens {
        Tokens {
            profiles: Profiles::new(hasher, TokenSettings::default()),
            checking: TokenChecking::new(MAX_ENDPOINTS),
            attempts: HashMap::new(),
            refused_tokens: HashSet::new(),
            refused: 0,
        }
    }

    pub fn counters(&self) -> TokenCounters {
        self.profiles.counters()
    }

    pub fn endpoints_not_tracked(&self) -> u64 {
        self.checking.endpoints_not_tracked()
    }

    /// Judges the request's token (and learns the response's); returns
    /// whether the token is one the API should not honour (expired,
    /// unsigned, forged): its refusals say nothing about authorization.
    pub fn observe(
        &mut self,
        f: &Facts<'_>,
        baselines: &Baselines,
        out: &mut Vec<Finding>,
    ) -> bool {
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
                    .about_api()
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
            return false;
        };
        let forged = !forgery(&judgement).is_empty();
        // Accepted within the leeway JWT libraries allow by default, an
        // expired token says the API is configured, not broken.
        let expired = matches!(judgement.validity,
            Validity::Expired { expired_for_secs } if expired_for_secs > LIBRARY_LEEWAY_SECS);
        let digest = f.credentials.jwt_digest;
        if f.succeeded() && (forged || expired) {
            // Honoured: the endpoint is shown to reject bad tokens or
            // anonymous callers, or its answer is about the token's
            // principal, or (an expired token) it is always called with
            // credentials and the API refused this very token before. An
            // endpoint merely called with tokens may ignore them (public
            // endpoints called by logged-in clients).
            let endpoint = baselines.endpoint(&f.key);
            let enforced = matches!(
                enforcement,
                Enforcement::ChecksTokens | Enforcement::RequiresCredential
            ) || endpoint.is_some_and(|e| {
                !e.optional_credentials() && (e.checks_credentials() || e.requires_credentials())
            });
            let refused_before = digest.is_some_and(|d| self.refused_tokens.contains(&d))
                && endpoint.is_some_and(|e| e.always_credentialed(&baselines.limits, f.now));
            if enforced || refused_before || f.response_names_principal() {
                accepted(f, &judgement, out);
            } else if forged {
                // Served by an endpoint that may ignore tokens: still an
                // attempt (clients do not send forged tokens by mistake).
                self.attempt(f, &judgement, forged, out);
            }
        } else if f.rejected() {
            if let Some(d) = digest {
                if self.refused_tokens.len() >= MAX_REFUSED_TOKENS {
                    self.refused_tokens.clear();
                }
                self.refused_tokens.insert(d);
            }
            self.attempt(f, &judgement, forged, out);
        }
        // A token about to expire may have expired by the API's clock.
        let expiring = f
            .jwt()
            .and_then(|jwt| jwt.expires_at())
            .is_some_and(|exp| exp <= f.now.saturating_add(EXPIRING_SECS));
        forged || expiring || judgement.condition() != TokenCondition::LooksValid
    }

    /// A forged token refused or served without being honoured, or one of
    /// several principals' expired tokens from one client.
    fn attempt(&mut self, f: &Facts<'_>, j: &TokenJudgement, forged: bool, out: &mut Vec<Finding>) {
        let (Some(digest), true) = (f.credentials.jwt_digest, forged) else {
            if !matches!(j.validity, Validity::Expired { .. }) {
                return;
            }
            return self.replayed(f, out);
        };
        let Some(a) = self.window(f.client_ip) else {
            return;
        };
        if a.forged.iter().all(|(_, d)| *d != digest) {
            if a.forged.len() >= MAX_ATTEMPTS_KEPT {
                a.forged.pop_front();
            }
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
                        "{} presented {forged} forged tokens within {ATTEMPT_WINDOW_SECS} seconds ({}); the last was answered {} without the API acting on it.",
                        f.actor_label(),
                        describe(&forgery(j)),
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
            if a.principals.len() >= MAX_ATTEMPTS_KEPT {
                a.principals.pop_front();
            }
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
    // Per client address: a forger names whichever principals it likes,
    // and one forger is one finding.
    let subject = format!("{}|{}", f.key.host, f.client_ip);
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
    // A token signed with a listed secret the API's own tokens are not
    // signed with, or one it never issued while the sensor watched (with a
    // guessable key anyone can mint tokens): minted, and accepted.
    let forged = forgery(j);
    let weak = forged.iter().find_map(|r| match r {
        Suspicion::WeakSecret { secret, issuer_key } => Some((*secret, *issuer_key)),
        _ => None,
    });
    if let Some((secret, issuer_key)) = weak {
        out.push(
            Finding::new(
                RuleId::JwtWeakSecret,
                95,
                format!(
                    "{} called {} with a {alg} JWT the API never issued, signed with the publicly listed secret {}{}, and the API answered {status}.",
                    f.actor_label(),
                    f.key,
                    mask(secret),
                    if issuer_key { " (the API's own key)" } else { "" }
                ),
                subject.clone(),
            )
            .title("Token minted with a publicly known secret accepted".into())
            .attribute("reasons", serde_json::json!(j.reasons)),
        );
    }
    let reasons: Vec<Suspicion> = forged
        .into_iter()
        .filter(|r| !matches!(r, Suspicion::Unsigned { .. } | Suspicion::WeakSecret { .. }))
        .collect();
    if weak.is_none() && j.provenance == Provenance::Suspicious && !reasons.is_empty() {
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

/// What says a token was forged: strong suspicions, except that a token
/// signed with the API's own (listed) key is forged only when something
/// else shows the API never issued it (unseen while the sensor watched,
/// a shape or validity the API never gives).
fn forgery(j: &TokenJudgement) -> Vec<Suspicion> {
    let minted = j.provenance != Provenance::Issued
        && j.reasons.iter().any(|r| match r {
            Suspicion::UnseenWhileWatching { .. } => true,
            Suspicion::WeakSecret { .. } => false,
            other => other.is_strong(),
        });
    j.reasons
        .iter()
        .filter(|r| match r {
            Suspicion::WeakSecret { issuer_key, .. } => !issuer_key || minted,
            other => other.is_strong(),
        })
        .cloned()
        .collect()
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
            Suspicion::ExpiresBeyondIssued {
                remaining_secs,
                longest_issued_secs,
            } => format!(
                "valid for {remaining_secs} s more, the API's own tokens for at most {longest_issued_secs} s"
            ),
            Suspicion::UnseenWhileWatching { .. } => "never seen issued".into(),
        })
        .collect();
    words.join("; ")
}

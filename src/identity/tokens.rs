//! Tokens the API hands out, and tokens it is shown.
//!
//! [`Tokens`] learns, per issuer (the host whose 2xx/3xx responses carried
//! the token), what the API issues: the signing algorithm and header, the
//! claim names, the lifetime `exp − iat`, the issuer's clock, and when the
//! sensor began watching it issue. It then judges a token presented in a
//! request: [`Provenance::Issued`] (seen issued), [`Provenance::Consistent`]
//! (not seen, but shaped like what the issuer issues), or suspicious, with
//! typed [`Suspicion`]s saying what differed and what it was compared
//! against. Forgeries need not carry a role: a token with another claim set,
//! lifetime, header or algorithm than the issuer's is flagged whatever it
//! claims. HMAC tokens are checked against the public wordlist
//! (`identity::jwt_secrets`): the first token of each signing configuration
//! says whether the API's own key is weak; tokens the API never issued are
//! each checked once, under a per-second budget in packet time.
//!
//! [`TokenChecking`] learns, per endpoint, whether the endpoint is shown to
//! check tokens (it rejected bad ones, it never served an anonymous caller):
//! what gates "expired / unsigned / tampered token accepted", so a public
//! endpoint that ignores the token it is sent raises nothing.
//!
//! This module owns no rule, severity or text (the detectors do), and never
//! keeps a token: tokens are remembered as keyed hashes (`SecretHasher`).
//! Every collection is bounded and counts what its bound turned away.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]

use super::jwt_secrets::{PreparedToken, SecretIndex};
use super::SecretHasher;
use crate::jwt::{Alg, Jwt};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Bounds and tolerances. The defaults suit one sensor watching a few
/// hundred APIs; every cap has a counter in [`TokenCounters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// Tolerance on `exp`, `nbf`, `iat` and on lifetimes, on top of the
    /// issuer's clock offset learned from the tokens it issues.
    pub clock_skew_secs: u64,
    /// Issued tokens an issuer must have been seen issuing before tokens
    /// are judged against its profile.
    pub min_issued_to_judge: u32,
    /// Issuers (hosts) profiled.
    pub max_issuers: usize,
    /// Token families (algorithm, `typ`, header names) per issuer.
    pub max_families_per_issuer: usize,
    /// Claim-name sets, each with its lifetimes, per family.
    pub max_shapes_per_family: usize,
    /// Issued tokens remembered (as two 8-byte keyed hashes each), all issuers.
    pub max_issued_remembered: usize,
    /// Weak-secret answers remembered, one per distinct token.
    pub max_checks_remembered: usize,
    /// Weak-secret checking budget, in SHA-256 block compressions per
    /// second of packet time. A typical HS256 token (~220 bytes signed)
    /// checked against the whole list costs 5 × 103,788 ≈ 0.52 M blocks,
    /// 16.5 ms at ~31 ns a block (x86-64 with SHA extensions): the default
    /// 1 M a second is ~2 such checks, ~3 % of a core.
    pub weak_check_blocks_per_sec: u64,
    /// What the budget can save up, which is also the longest the analysis
    /// thread spends on checks at once (8 M ≈ 250 ms); a token whose single
    /// check costs more (HS256 over ~4.8 KB, HS512 over ~1.1 KB) is never
    /// checked (counted).
    pub weak_check_burst_blocks: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            clock_skew_secs: 5,
            min_issued_to_judge: 3,
            max_issuers: 256,
            max_families_per_issuer: 8,
            max_shapes_per_family: 8,
            max_issued_remembered: 262_144,
            max_checks_remembered: 65_536,
            weak_check_blocks_per_sec: 1_000_000,
            weak_check_burst_blocks: 8_000_000,
        }
    }
}

/// What the caps turned away and what the checks cost, for the stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TokenCounters {
    /// Distinct issued tokens learned.
    pub issued_learned: u64,
    /// Tokens in responses that were the request's own token (echoes, not issuance).
    pub issued_echoes_ignored: u64,
    /// Issued tokens not profiled: `max_issuers` reached.
    pub issuers_not_profiled: u64,
    /// Issued tokens whose family or claim-name set found no room.
    pub shapes_not_learned: u64,
    /// Claim or header names not indexed (more than an issuer's name table holds).
    pub names_not_indexed: u64,
    /// Times the oldest half of the issued-token memory was forgotten.
    pub issued_memory_resets: u64,
    /// Presented tokens judged.
    pub judged: u64,
    /// Full checks against the wordlist, and SHA-256 blocks they cost.
    pub weak_full_checks: u64,
    pub weak_check_blocks: u64,
    /// Answers from the per-token cache, and tokens found by a secret found before.
    pub weak_cached: u64,
    pub weak_found_by_hint: u64,
    /// Tokens not checked because the budget was spent (checked when seen
    /// again with budget left), and because one check would cost more
    /// than the whole burst.
    pub weak_not_checked_budget: u64,
    pub weak_not_checked_too_costly: u64,
    /// Times the oldest half of the per-token answers was forgotten.
    pub weak_cache_resets: u64,
    /// Signing configurations whose verdict could not be kept (table full).
    pub weak_configs_not_tracked: u64,
}

/// Whether a presented token was issued by the API, as far as the sensor saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Provenance {
    /// The sensor saw the API issue this very token.
    Issued,
    /// Not seen issued, and nothing about it differs from what the issuer
    /// issues (e.g. issued before the sensor started watching).
    Consistent,
    /// Not seen issued, and at least one [`Suspicion`] says how it differs
    /// or was tampered with (possibly only a weak one: see
    /// [`TokenJudgement::has_strong_reason`]).
    Suspicious,
    /// Not enough known about the issuer to tell.
    Unjudged(Unjudged),
}

/// Why a token's provenance was not judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Unjudged {
    /// No issuer profile for the request's host, the token's `iss`, or the
    /// issuer whose tokens this host was seen accepting.
    NoProfile,
    /// The issuer was seen issuing too few tokens yet.
    TooFewIssued { issued: u64, needed: u32 },
    /// The token differs from the profile, but the profile could not learn
    /// everything the issuer issued (a cap was reached: see
    /// `names_not_indexed`, `shapes_not_learned`), so the difference may be
    /// what it missed.
    ProfileIncomplete,
}

/// The token's time claims against packet time, with the clock skew and
/// the issuer's learned clock offset allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Validity {
    Valid,
    Expired { expired_for_secs: u64 },
    NotYetValid { valid_in_secs: u64 },
}

/// One thing wrong with a presented token, with what it was compared against.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Suspicion {
    /// `alg: none` or an empty signature.
    Unsigned { alg: Alg },
    /// Signed with a secret from the public wordlist. `issuer_key`: the
    /// issuer's own issued tokens are signed with it (the API's key is weak).
    WeakSecret {
        secret: &'static str,
        issuer_key: bool,
    },
    /// The signature of a token the API issued, over other header or claims.
    PayloadTampered,
    /// The header and claims of a token the API issued, under another signature.
    SignatureReplaced,
    /// An algorithm the issuer does not sign with.
    AlgDiffers { presented: Alg, issued: Vec<Alg> },
    /// Header fields the issuer never writes, or missing ones it always writes
    /// (e.g. `jku`, `jwk`, `x5u` added; `kid` dropped).
    HeaderDiffers {
        extra: Vec<String>,
        missing: Vec<String>,
    },
    /// Another `typ` than the issuer's tokens of this header carry.
    TypDiffers {
        presented: Option<String>,
        issued: Option<String>,
    },
    /// A `kid` the issuer was never seen using, on a token that claims to be
    /// issued while the sensor watched (older tokens may predate a key rotation).
    KidUnseen {
        presented: String,
        issued: Vec<String>,
    },
    /// Claims the issuer never puts, or missing ones it always puts.
    ClaimsDiffer {
        extra: Vec<String>,
        missing: Vec<String>,
        issued_always: Vec<String>,
    },
    /// A lifetime `exp − iat` the issuer does not give tokens of this shape.
    LifetimeDiffers {
        presented_secs: u64,
        issued: LifetimeSummary,
    },
    /// `iat` later than packet time beyond skew and the issuer's clock.
    IatInFuture { iat: u64, now: u64 },
    /// Valid for longer from now than any token the issuer was seen
    /// issuing is valid from its issuance (forgers pick far-off `exp`s).
    ExpiresBeyondIssued {
        remaining_secs: u64,
        longest_issued_secs: u64,
    },
    /// Shaped like the issuer's tokens and issued (by its `iat`) while the
    /// sensor watched the issuer, yet never seen issued. Weak on its own:
    /// the sensor may have missed the response that carried it.
    UnseenWhileWatching { iat: u64, watching_since: u64 },
}

impl Suspicion {
    /// Strong suspicions are evidence of forgery or tampering by themselves;
    /// weak ones (`UnseenWhileWatching`, `KidUnseen`) have innocent
    /// explanations (missed traffic, key rotation) and want company.
    pub fn is_strong(&self) -> bool {
        !matches!(
            self,
            Suspicion::UnseenWhileWatching { .. } | Suspicion::KidUnseen { .. }
        )
    }
}

/// The lifetimes the issuer gives a token shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LifetimeSummary {
    /// The distinct lifetimes seen (up to 8), or empty when there were more.
    pub values: Vec<u64>,
    pub min_secs: u64,
    pub max_secs: u64,
}

/// The answer of the weak-secret check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum WeakSecretCheck {
    /// Not an HMAC token (or a signature of the wrong length): nothing to try.
    NotApplicable,
    /// Signed with this wordlist secret.
    Found {
        secret: &'static str,
        issuer_key: bool,
    },
    /// Checked against the whole list: none of its secrets signed it.
    NotFound,
    /// Issued by the API, whose key was already checked and is not in the list.
    NotNeeded,
    /// Not checked: the budget was spent (counted; retried when seen again).
    OverBudget,
}

/// Everything the sensor concludes about a presented token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenJudgement {
    pub provenance: Provenance,
    /// Every suspicion, whatever the provenance (an issued token signed with
    /// a weak key carries `WeakSecret`).
    pub reasons: Vec<Suspicion>,
    pub validity: Validity,
    pub weak_secret: WeakSecretCheck,
}

impl TokenJudgement {
    /// Whether any suspicion is strong (see [`Suspicion::is_strong`]).
    pub fn has_strong_reason(&self) -> bool {
        self.reasons.iter().any(Suspicion::is_strong)
    }

    /// The token as [`TokenChecking`] needs it: bad (an API that checks
    /// tokens rejects it) or good-looking.
    pub fn condition(&self) -> TokenCondition {
        let bad = if self
            .reasons
            .iter()
            .any(|r| matches!(r, Suspicion::Unsigned { .. }))
        {
            Some(BadToken::Unsigned)
        } else if self
            .reasons
            .iter()
            .any(|r| matches!(r, Suspicion::PayloadTampered | Suspicion::SignatureReplaced))
        {
            Some(BadToken::Tampered)
        } else {
            match self.validity {
                Validity::Expired { .. } => Some(BadToken::Expired),
                Validity::NotYetValid { .. } => Some(BadToken::NotYetValid),
                Validity::Valid => None,
            }
        };
        bad.map_or(TokenCondition::LooksValid, TokenCondition::Bad)
    }
}

/// Reads a lifetime, list of names etc. at most this long into a suspicion.
const MAX_LISTED: usize = 16;
/// Longer claim or header names, `typ` and `kid` values are not remembered.
const MAX_NAME_BYTES: usize = 128;
const MAX_CLAIM_NAMES: usize = 64;
const MAX_HEADER_NAMES: usize = 32;
const MAX_KIDS: usize = 16;
const MAX_LIFETIMES: usize = 8;
/// The issuer's clock offset is learned from issued tokens whose `iat` is
/// this close to packet time (a larger gap is a reissued old `iat`, not a clock).
const MAX_CLOCK_OFFSET_SECS: u64 = 300;
/// Secrets found recently, tried on every token before a full check.
const MAX_HINTS: usize = 8;
/// JWTs read from one body or header value.
const MAX_JWTS_PER_TEXT: usize = 16;

/// The token profiles, the issued-token memory and the weak-secret checker.
pub struct Tokens {
    hasher: SecretHasher,
    settings: TokenSettings,
    profiles: Vec<Profile>,
    by_host: HashMap<u64, u32>,
    by_iss: HashMap<u64, u32>,
    /// Request host → the issuer whose issued tokens it was shown.
    shown_at: HashMap<u64, u32>,
    /// Issued tokens: content hash → signature hash and issuer.
    issued: Generations<u64, IssuedRecord>,
    /// Issued tokens: signature hash → content hash.
    issued_signatures: Generations<u64, u64>,
    /// Packet time the issued-token memory last forgot its oldest half:
    /// tokens issued before then may have been seen and forgotten.
    forgotten_until: u64,
    weak: WeakChecker,
    counters: TokenCounters,
}

#[derive(Debug, Clone, Copy)]
struct IssuedRecord {
    signature: u64,
    issuer: u32,
}

/// A token's keyed hashes: its content (`header.payload`), its signature,
/// and both together (its identity).
#[derive(Debug, Clone, Copy)]
struct Digests {
    content: u64,
    signature: u64,
    id: u64,
}

impl Default for Tokens {
    /// Default settings and a hasher with a random key.
    fn default() -> Self {
        Tokens::new(SecretHasher::default(), TokenSettings::default())
    }
}

impl Tokens {
    pub fn new(hasher: SecretHasher, settings: TokenSettings) -> Tokens {
        Tokens {
            hasher,
            profiles: Vec::new(),
            by_host: HashMap::new(),
            by_iss: HashMap::new(),
            shown_at: HashMap::new(),
            issued: Generations::new(settings.max_issued_remembered),
            issued_signatures: Generations::new(settings.max_issued_remembered),
            forgotten_until: 0,
            weak: WeakChecker::new(&settings),
            counters: TokenCounters::default(),
            settings,
        }
    }

    pub fn counters(&self) -> TokenCounters {
        let mut counters = self.counters;
        counters.issued_memory_resets = self.issued.resets;
        counters.weak_cache_resets = self.weak.checked.resets;
        counters
    }

    /// Bytes held here (the wordlist and its tables are shared and counted
    /// by `jwt_secrets::memory_bytes`).
    pub fn memory_bytes(&self) -> usize {
        self.profiles
            .iter()
            .map(Profile::memory_bytes)
            .sum::<usize>()
            + (self.by_host.capacity() + self.by_iss.capacity() + self.shown_at.capacity()) * 16
            + self.issued.memory_bytes()
            + self.issued_signatures.memory_bytes()
            + self.weak.memory_bytes()
    }

    /// Learns `token`, found in a 2xx/3xx response of `issuer_host` (body or
    /// `Set-Cookie`, see [`jwts_in`]). `presented` is the request's own token:
    /// a response repeating it is an echo, not an issuance. Returns the
    /// weak-secret answer: `Found` with `issuer_key` means the API signs
    /// its tokens with a guessable secret.
    pub fn learn_issued(
        &mut self,
        issuer_host: &str,
        token: &Jwt,
        presented: Option<&Jwt>,
        now_secs: u64,
    ) -> WeakSecretCheck {
        if presented.is_some_and(|p| {
            p.signing_input() == token.signing_input() && p.signature() == token.signature()
        }) {
            self.counters.issued_echoes_ignored += 1;
            return WeakSecretCheck::NotApplicable;
        }
        let host = self.digest("token issuer host", issuer_host.as_bytes());
        let digests = self.digests(token);
        let Some(issuer) = self.profile_for(host, now_secs) else {
            self.counters.issuers_not_profiled += 1;
            let config = self.config_key(host, token);
            return self
                .weak
                .check_issued(config, token, now_secs, &mut self.counters);
        };
        let record = IssuedRecord {
            signature: digests.signature,
            issuer,
        };
        let new = self.issued.get(&digests.content).is_none();
        if self.issued.insert(digests.content, record)
            | self
                .issued_signatures
                .insert(digests.signature, digests.content)
        {
            self.forgotten_until = now_secs;
        }
        if new {
            self.counters.issued_learned += 1;
            if let Some(profile) = self.profiles.get_mut(issuer as usize) {
                profile.learn(token, now_secs, &self.settings, &mut self.counters);
            }
            if let Some(iss) = token.claim_str("iss") {
                let iss = self.digest("token iss", iss.as_bytes());
                if self.by_iss.len() < self.settings.max_issuers.saturating_mul(4) {
                    self.by_iss.entry(iss).or_insert(issuer);
                }
            }
        }
        let config = self.config_key(host, token);
        self.weak
            .check_issued(config, token, now_secs, &mut self.counters)
    }

    /// Judges `token`, presented in a request to `host` at packet time `now_secs`.
    pub fn judge(&mut self, host: &str, token: &Jwt, now_secs: u64) -> TokenJudgement {
        self.counters.judged += 1;
        let skew = self.settings.clock_skew_secs;
        let host = self.digest("token issuer host", host.as_bytes());
        let digests = self.digests(token);
        let mut reasons = Vec::new();
        if token.is_unsigned() {
            reasons.push(Suspicion::Unsigned {
                alg: token.algorithm(),
            });
        }
        // Seen issued, or pieces of an issued token put together anew.
        let record = self.issued.get(&digests.content).copied();
        let issued_by = record
            .filter(|r| r.signature == digests.signature)
            .map(|r| r.issuer);
        if issued_by.is_none() {
            if record.is_some() {
                reasons.push(Suspicion::SignatureReplaced);
            } else if self
                .issued_signatures
                .get(&digests.signature)
                .is_some_and(|content| *content != digests.content)
                && !token.signature().is_empty()
            {
                reasons.push(Suspicion::PayloadTampered);
            }
        }
        let tampered = reasons
            .iter()
            .any(|r| matches!(r, Suspicion::PayloadTampered | Suspicion::SignatureReplaced));
        let (provenance, profile) = match issued_by {
            Some(issuer) => {
                if self.shown_at.len() < self.settings.max_issuers.saturating_mul(4) {
                    self.shown_at.insert(host, issuer);
                }
                (Provenance::Issued, Some(issuer))
            }
            None => self.compare_with_profiles(host, token, now_secs, tampered, &mut reasons),
        };
        let offsets = profile
            .and_then(|i| self.profiles.get(i as usize))
            .map_or(ClockOffsets::default(), |p| p.clock);
        let validity = validity(token, now_secs, skew, offsets);
        if let Some(iat) = token.issued_at() {
            if iat > now_secs.saturating_add(skew + offsets.ahead) {
                reasons.push(Suspicion::IatInFuture { iat, now: now_secs });
            }
        }
        let issuer_host = profile
            .and_then(|i| self.profiles.get(i as usize))
            .map_or(host, |p| p.host);
        // Only HMAC tokens have a signing configuration worth a hash.
        let config = if PreparedToken::applies(token) {
            self.config_key(issuer_host, token)
        } else {
            0
        };
        let weak_secret = self.weak.check_presented(
            config,
            digests.id,
            issued_by.is_some(),
            token,
            now_secs,
            &mut self.counters,
        );
        if let WeakSecretCheck::Found { secret, issuer_key } = weak_secret {
            reasons.push(Suspicion::WeakSecret { secret, issuer_key });
        }
        let provenance = match provenance {
            Provenance::Consistent if reasons.iter().any(Suspicion::is_strong) => {
                Provenance::Suspicious
            }
            other => other,
        };
        TokenJudgement {
            provenance,
            reasons,
            validity,
            weak_secret,
        }
    }

    /// Compares a token not seen issued with the profiles it may come from
    /// (the token's `iss`, the request host, the issuer whose tokens this
    /// host accepts), keeping the closest; returns the provenance and the
    /// profile compared with.
    fn compare_with_profiles(
        &self,
        host: u64,
        token: &Jwt,
        now_secs: u64,
        tampered: bool,
        reasons: &mut Vec<Suspicion>,
    ) -> (Provenance, Option<u32>) {
        let iss = token
            .claim_str("iss")
            .map(|iss| self.digest("token iss", iss.as_bytes()));
        let by_iss = iss.and_then(|iss| self.by_iss.get(&iss)).copied();
        let by_host = self.by_host.get(&host).copied();
        let shown_at = self.shown_at.get(&host).copied();
        // The same profile reached twice is compared once.
        let candidates = [
            by_iss,
            by_host.filter(|p| by_iss != Some(*p)),
            shown_at.filter(|p| by_iss != Some(*p) && by_host != Some(*p)),
        ];
        let needed = self.settings.min_issued_to_judge;
        let mut best: Option<(u32, Vec<Suspicion>)> = None;
        let mut most_issued = None;
        for index in candidates.into_iter().flatten() {
            let Some(profile) = self.profiles.get(index as usize) else {
                continue;
            };
            most_issued = most_issued.max(Some(profile.issued));
            if profile.issued < u64::from(needed) {
                continue;
            }
            let found = profile.compare(token, &self.settings);
            if best.as_ref().is_none_or(|(_, b)| found.len() < b.len()) {
                best = Some((index, found));
            }
        }
        let Some((index, found)) = best else {
            let unjudged = match most_issued {
                Some(issued) => Unjudged::TooFewIssued { issued, needed },
                None => Unjudged::NoProfile,
            };
            let provenance = if tampered {
                Provenance::Suspicious
            } else {
                Provenance::Unjudged(unjudged)
            };
            return (provenance, None);
        };
        let incomplete = self
            .profiles
            .get(index as usize)
            .is_some_and(|p| p.incomplete);
        if incomplete && !found.is_empty() {
            let provenance = if tampered {
                Provenance::Suspicious
            } else {
                Provenance::Unjudged(Unjudged::ProfileIncomplete)
            };
            return (provenance, Some(index));
        }
        let mut differs = !found.is_empty();
        reasons.extend(found);
        let skew = self.settings.clock_skew_secs;
        let profile = self.profiles.get(index as usize);
        let longest = profile.map_or(0, |p| p.longest_validity(token));
        let exp = token.expires_at();
        // Without `iat` the lifetime is unknown (with it, `LifetimeDiffers`
        // says the same): the validity left bounds it instead.
        if let (Some(exp), true, None) = (exp, longest > 0, token.issued_at()) {
            let remaining = exp.saturating_sub(now_secs);
            let allowed = longest.saturating_add(skew);
            if remaining > allowed.saturating_add(allowed / 10) {
                reasons.push(Suspicion::ExpiresBeyondIssued {
                    remaining_secs: remaining,
                    longest_issued_secs: longest,
                });
                differs = true;
            }
        }
        if !differs && !tampered {
            // Without `iat`, the issue time is at least `exp` minus the
            // longest validity the issuer gives.
            let iat = token.issued_at().or_else(|| {
                exp.filter(|_| longest > 0)
                    .map(|exp| exp.saturating_sub(longest.saturating_add(skew)))
            });
            if let (Some(iat), Some(profile)) = (iat, profile) {
                let forgotten = self.forgotten_until.max(profile.watching_since);
                if iat >= forgotten.saturating_add(skew) && iat <= now_secs.saturating_add(skew) {
                    reasons.push(Suspicion::UnseenWhileWatching {
                        iat,
                        watching_since: profile.watching_since,
                    });
                    differs = true;
                }
            }
        }
        let provenance = if differs || tampered {
            Provenance::Suspicious
        } else {
            Provenance::Consistent
        };
        (provenance, Some(index))
    }

    fn profile_for(&mut self, host: u64, now_secs: u64) -> Option<u32> {
        if let Some(index) = self.by_host.get(&host) {
            return Some(*index);
        }
        if self.profiles.len() >= self.settings.max_issuers {
            return None;
        }
        let index = u32::try_from(self.profiles.len()).ok()?;
        self.profiles.push(Profile::new(host, now_secs));
        self.by_host.insert(host, index);
        Some(index)
    }

    fn digest(&self, purpose: &str, value: &[u8]) -> u64 {
        let digest = self.hasher.digest(purpose, value);
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(first)
    }

    fn digests(&self, token: &Jwt) -> Digests {
        let content = self.digest("jwt content", token.signing_input().as_bytes());
        let signature = self.digest("jwt signature", token.signature());
        Digests {
            content,
            signature,
            id: content ^ signature.rotate_left(29),
        }
    }

    /// A signing configuration: the issuer and the exact header (algorithm,
    /// `kid`, everything), which selects the key.
    fn config_key(&self, issuer_host: u64, token: &Jwt) -> u64 {
        issuer_host ^ self.digest("jwt header", token.header_segment().as_bytes())
    }
}

fn validity(token: &Jwt, now: u64, skew: u64, clock: ClockOffsets) -> Validity {
    if let Some(exp) = token.expires_at() {
        let deadline = exp.saturating_add(skew).saturating_add(clock.behind);
        if now > deadline {
            return Validity::Expired {
                expired_for_secs: now - exp,
            };
        }
    }
    if let Some(nbf) = token.not_before() {
        if nbf > now.saturating_add(skew).saturating_add(clock.ahead) {
            return Validity::NotYetValid {
                valid_in_secs: nbf - now,
            };
        }
    }
    Validity::Valid
}

/// How far the issuer's clock was seen ahead of or behind packet time
/// (`iat` of tokens it issued, against the response's time).
#[derive(Debug, Clone, Copy, Default)]
struct ClockOffsets {
    ahead: u64,
    behind: u64,
}

/// What one issuer issues.
struct Profile {
    host: u64,
    watching_since: u64,
    issued: u64,
    clock: ClockOffsets,
    claim_names: Names,
    header_names: Names,
    families: Vec<Family>,
    /// Some issued token could not be learned in full (a cap was reached).
    incomplete: bool,
}

/// Tokens of one algorithm, `typ` and set of header names.
struct Family {
    alg: Alg,
    typ: Option<Box<str>>,
    header_mask: u64,
    claims_ever: u64,
    claims_always: u64,
    shapes: Vec<Shape>,
    kids: Vec<Box<str>>,
    kids_overflowed: bool,
}

/// Tokens of one family with one claim-name set (access and refresh tokens
/// usually differ here and in lifetime).
struct Shape {
    claims: u64,
    lifetimes: Lifetimes,
    /// The longest `exp` minus packet time seen at issuance: the lifetime
    /// of tokens without `iat`, and a bound on any presented token's.
    longest_validity: u64,
}

#[derive(Default)]
struct Lifetimes {
    values: Vec<u64>,
    min: u64,
    max: u64,
    overflowed: bool,
}

impl Lifetimes {
    fn learn(&mut self, lifetime: u64) {
        if self.values.is_empty() && !self.overflowed {
            (self.min, self.max) = (lifetime, lifetime);
        }
        self.min = self.min.min(lifetime);
        self.max = self.max.max(lifetime);
        if self.overflowed || self.values.contains(&lifetime) {
            return;
        }
        if self.values.len() < MAX_LIFETIMES {
            self.values.push(lifetime);
        } else {
            self.values = Vec::new();
            self.overflowed = true;
        }
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty() && !self.overflowed
    }

    fn accepts(&self, lifetime: u64, skew: u64) -> bool {
        if self.overflowed {
            return lifetime.saturating_add(skew) >= self.min
                && lifetime <= self.max.saturating_add(skew);
        }
        self.values.iter().any(|v| v.abs_diff(lifetime) <= skew)
    }
}

/// An issuer's claim (or header) names, each given one bit of a mask.
struct Names {
    names: Vec<Box<str>>,
    capacity: usize,
}

impl Names {
    fn new(capacity: usize) -> Names {
        Names {
            names: Vec::new(),
            capacity,
        }
    }

    fn bit(&self, name: &str) -> Option<u64> {
        self.names
            .iter()
            .position(|n| &**n == name)
            .map(|i| 1u64 << i)
    }

    /// The mask of `names`, indexing new ones while there is room; `None`
    /// when a name could not be indexed.
    fn learn<'a>(&mut self, names: impl Iterator<Item = &'a str>) -> Option<u64> {
        let mut mask = 0;
        let mut complete = true;
        for name in names {
            match self.bit(name) {
                Some(bit) => mask |= bit,
                None if self.names.len() < self.capacity && name.len() <= MAX_NAME_BYTES => {
                    mask |= 1u64 << self.names.len();
                    self.names.push(name.into());
                }
                None => complete = false,
            }
        }
        complete.then_some(mask)
    }

    /// The mask of the names known, and the names that are not (listed up to a bound).
    fn mask<'a>(&self, names: impl Iterator<Item = &'a str>) -> (u64, Vec<String>) {
        let mut mask = 0;
        let mut unknown = Vec::new();
        for name in names {
            match self.bit(name) {
                Some(bit) => mask |= bit,
                None if unknown.len() < MAX_LISTED => unknown.push(clip(name)),
                None => {}
            }
        }
        (mask, unknown)
    }

    fn list(&self, mask: u64) -> Vec<String> {
        self.names
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1u64 << i) != 0)
            .map(|(_, n)| n.to_string())
            .take(MAX_LISTED)
            .collect()
    }

    fn memory_bytes(&self) -> usize {
        self.names.iter().map(|n| n.len() + 16).sum()
    }
}

fn clip(text: &str) -> String {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

impl Profile {
    fn new(host: u64, now_secs: u64) -> Profile {
        Profile {
            host,
            watching_since: now_secs,
            issued: 0,
            clock: ClockOffsets::default(),
            claim_names: Names::new(MAX_CLAIM_NAMES),
            header_names: Names::new(MAX_HEADER_NAMES),
            families: Vec::new(),
            incomplete: false,
        }
    }

    fn memory_bytes(&self) -> usize {
        size_of::<Profile>()
            + self.claim_names.memory_bytes()
            + self.header_names.memory_bytes()
            + self
                .families
                .iter()
                .map(|f| {
                    size_of::<Family>()
                        + f.kids.iter().map(|k| k.len() + 16).sum::<usize>()
                        + f.shapes.len() * (size_of::<Shape>() + MAX_LIFETIMES * 8)
                })
                .sum::<usize>()
    }

    fn learn(
        &mut self,
        token: &Jwt,
        now_secs: u64,
        settings: &TokenSettings,
        counters: &mut TokenCounters,
    ) {
        self.issued += 1;
        if let Some(iat) = token.issued_at() {
            if iat > now_secs && iat - now_secs <= MAX_CLOCK_OFFSET_SECS {
                self.clock.ahead = self.clock.ahead.max(iat - now_secs);
            } else if iat < now_secs && now_secs - iat <= MAX_CLOCK_OFFSET_SECS {
                self.clock.behind = self.clock.behind.max(now_secs - iat);
            }
        }
        let header = self.header_names.learn(token.header_names());
        let claims = self.claim_names.learn(token.claim_names());
        let (Some(header_mask), Some(claims)) = (header, claims) else {
            counters.names_not_indexed += 1;
            self.incomplete = true;
            return;
        };
        let alg = token.algorithm();
        let typ = token.typ().filter(|t| t.len() <= MAX_NAME_BYTES);
        let family = self
            .families
            .iter()
            .position(|f| f.alg == alg && f.header_mask == header_mask && f.typ.as_deref() == typ);
        let family = match family {
            Some(i) => self.families.get_mut(i),
            None if self.families.len() < settings.max_families_per_issuer => {
                self.families.push(Family {
                    alg,
                    typ: typ.map(Into::into),
                    header_mask,
                    claims_ever: 0,
                    claims_always: claims,
                    shapes: Vec::new(),
                    kids: Vec::new(),
                    kids_overflowed: false,
                });
                self.families.last_mut()
            }
            None => None,
        };
        let Some(family) = family else {
            counters.shapes_not_learned += 1;
            self.incomplete = true;
            return;
        };
        family.claims_ever |= claims;
        family.claims_always &= claims;
        if let Some(kid) = token.kid() {
            if !family.kids.iter().any(|k| &**k == kid) {
                if family.kids.len() < MAX_KIDS && kid.len() <= MAX_NAME_BYTES {
                    family.kids.push(kid.into());
                } else {
                    family.kids_overflowed = true;
                }
            }
        }
        let mut shape = match family.shapes.iter().position(|s| s.claims == claims) {
            Some(i) => family.shapes.get_mut(i),
            None if family.shapes.len() < settings.max_shapes_per_family => {
                family.shapes.push(Shape {
                    claims,
                    lifetimes: Lifetimes::default(),
                    longest_validity: 0,
                });
                family.shapes.last_mut()
            }
            None => None,
        };
        if let (Some(shape), Some(exp)) = (shape.as_deref_mut(), token.expires_at()) {
            shape.longest_validity = shape.longest_validity.max(exp.saturating_sub(now_secs));
        }
        match (shape, token.lifetime_secs()) {
            (Some(shape), Some(lifetime)) => shape.lifetimes.learn(lifetime),
            (Some(_), None) => {}
            (None, _) => {
                counters.shapes_not_learned += 1;
                self.incomplete = true;
            }
        }
    }

    /// How `token` differs from what this issuer issues (empty: it does not).
    /// The longest validity the issuer gave tokens of this one's family
    /// and claim names (of its family, when none has its claim names); 0
    /// when unknown.
    fn longest_validity(&self, token: &Jwt) -> u64 {
        let alg = token.algorithm();
        let (claims, _) = self.claim_names.mask(token.claim_names());
        let shapes = self
            .families
            .iter()
            .filter(|f| f.alg == alg)
            .flat_map(|f| f.shapes.iter());
        let exact = shapes
            .clone()
            .filter(|s| s.claims == claims)
            .map(|s| s.longest_validity)
            .max();
        exact
            .or_else(|| shapes.map(|s| s.longest_validity).max())
            .unwrap_or(0)
    }

    fn compare(&self, token: &Jwt, settings: &TokenSettings) -> Vec<Suspicion> {
        let mut reasons = Vec::new();
        let skew = settings.clock_skew_secs;
        let alg = token.algorithm();
        let (header_mask, header_unknown) = self.header_names.mask(token.header_names());
        let typ = token.typ();
        let same_alg = self.families.iter().any(|f| f.alg == alg);
        if !same_alg {
            let mut issued: Vec<Alg> = self.families.iter().map(|f| f.alg).collect();
            issued.sort_unstable();
            issued.dedup();
            reasons.push(Suspicion::AlgDiffers {
                presented: alg,
                issued,
            });
        }
        // The family to compare with: same algorithm if any, then the
        // fewest header differences.
        let family = self
            .families
            .iter()
            .filter(|f| !same_alg || f.alg == alg)
            .min_by_key(|f| {
                (f.header_mask ^ header_mask).count_ones() + u32::from(f.typ.as_deref() != typ)
            });
        let Some(family) = family else {
            return reasons;
        };
        let extra = header_mask & !family.header_mask;
        let missing = family.header_mask & !header_mask;
        if extra != 0 || missing != 0 || !header_unknown.is_empty() {
            let mut extra = self.header_names.list(extra);
            extra.extend(header_unknown);
            reasons.push(Suspicion::HeaderDiffers {
                extra,
                missing: self.header_names.list(missing),
            });
        }
        if family.typ.as_deref() != typ {
            reasons.push(Suspicion::TypDiffers {
                presented: typ.map(clip),
                issued: family.typ.as_deref().map(clip),
            });
        }
        if let Some(kid) = token.kid() {
            let claims_recent = token
                .issued_at()
                .is_none_or(|iat| iat.saturating_add(skew) >= self.watching_since);
            if claims_recent && !family.kids_overflowed && !family.kids.iter().any(|k| &**k == kid)
            {
                reasons.push(Suspicion::KidUnseen {
                    presented: clip(kid),
                    issued: family.kids.iter().map(|k| clip(k)).collect(),
                });
            }
        }
        let (claims, claims_unknown) = self.claim_names.mask(token.claim_names());
        let extra = claims & !family.claims_ever;
        let missing = family.claims_always & !claims;
        if extra != 0 || missing != 0 || !claims_unknown.is_empty() {
            let mut extra = self.claim_names.list(extra);
            extra.extend(claims_unknown);
            reasons.push(Suspicion::ClaimsDiffer {
                extra,
                missing: self.claim_names.list(missing),
                issued_always: self.claim_names.list(family.claims_always),
            });
        }
        if let Some(lifetime) = token.lifetime_secs() {
            // Refresh and access tokens differ in lifetime: compare with the
            // shape of the same claim names when there is one.
            let exact = family
                .shapes
                .iter()
                .any(|s| s.claims == claims && !s.lifetimes.is_empty());
            let shapes = family
                .shapes
                .iter()
                .filter(|s| !s.lifetimes.is_empty() && (!exact || s.claims == claims));
            let learned = shapes.clone().next().is_some();
            if learned && !shapes.clone().any(|s| s.lifetimes.accepts(lifetime, skew)) {
                reasons.push(Suspicion::LifetimeDiffers {
                    presented_secs: lifetime,
                    issued: summary(shapes),
                });
            }
        }
        reasons
    }
}

fn summary<'a>(shapes: impl Iterator<Item = &'a Shape> + Clone) -> LifetimeSummary {
    let overflowed = shapes.clone().any(|s| s.lifetimes.overflowed);
    let mut values: Vec<u64> = if overflowed {
        Vec::new()
    } else {
        shapes
            .clone()
            .flat_map(|s| s.lifetimes.values.iter().copied())
            .collect()
    };
    values.sort_unstable();
    values.dedup();
    values.truncate(MAX_LISTED);
    LifetimeSummary {
        values,
        min_secs: shapes.clone().map(|s| s.lifetimes.min).min().unwrap_or(0),
        max_secs: shapes.map(|s| s.lifetimes.max).max().unwrap_or(0),
    }
}

/// Weak-secret checks with a budget, a per-token cache and what is known
/// per signing configuration.
struct WeakChecker {
    /// Token identity → the secret found, or none.
    checked: Generations<u64, Option<SecretIndex>>,
    /// Signing configuration (issuer, header) → the verdict on its key,
    /// from tokens the issuer issued.
    configs: HashMap<u64, KeyVerdict>,
    max_configs: usize,
    /// Secrets found recently, newest first.
    hints: Vec<SecretIndex>,
    budget: Budget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyVerdict {
    Weak(SecretIndex),
    NotInList,
}

/// A token bucket of SHA-256 block compressions, refilled by packet time.
struct Budget {
    level: u64,
    last_secs: Option<u64>,
    per_sec: u64,
    burst: u64,
}

impl Budget {
    fn refill(&mut self, now_secs: u64) {
        match self.last_secs {
            None => self.level = self.burst,
            Some(last) if now_secs > last => {
                let earned = (now_secs - last).saturating_mul(self.per_sec);
                self.level = self.level.saturating_add(earned).min(self.burst);
            }
            Some(_) => return,
        }
        self.last_secs = Some(now_secs);
    }

    fn try_spend(&mut self, cost: u64, now_secs: u64) -> bool {
        self.refill(now_secs);
        if self.level < cost {
            return false;
        }
        self.level -= cost;
        true
    }

    /// Spends what a necessary check costs even past the level (the first
    /// token of a signing configuration); later checks wait for the refill.
    fn spend_anyway(&mut self, cost: u64, now_secs: u64) {
        self.refill(now_secs);
        self.level = self.level.saturating_sub(cost);
    }
}

impl WeakChecker {
    fn new(settings: &TokenSettings) -> WeakChecker {
        WeakChecker {
            checked: Generations::new(settings.max_checks_remembered),
            configs: HashMap::new(),
            max_configs: settings.max_issuers.saturating_mul(4),
            hints: Vec::new(),
            budget: Budget {
                level: 0,
                last_secs: None,
                per_sec: settings.weak_check_blocks_per_sec,
                burst: settings.weak_check_burst_blocks,
            },
        }
    }

    fn memory_bytes(&self) -> usize {
        self.checked.memory_bytes() + self.configs.capacity() * 24
    }

    /// An issued token: its configuration's first token is checked against
    /// the whole list whatever the budget (how many there are is bounded by
    /// the configuration table, and they say whether the API's key is weak);
    /// later ones only against the secret found, if any.
    fn check_issued(
        &mut self,
        config: u64,
        token: &Jwt,
        now_secs: u64,
        counters: &mut TokenCounters,
    ) -> WeakSecretCheck {
        if !PreparedToken::applies(token) {
            return WeakSecretCheck::NotApplicable;
        }
        if self.configs.get(&config) == Some(&KeyVerdict::NotInList) {
            return WeakSecretCheck::NotNeeded;
        }
        let Some(prepared) = PreparedToken::new(token) else {
            return WeakSecretCheck::NotApplicable;
        };
        match self.configs.get(&config) {
            Some(KeyVerdict::NotInList) => return WeakSecretCheck::NotNeeded,
            Some(KeyVerdict::Weak(secret)) if prepared.verifies(*secret) => {
                return WeakSecretCheck::Found {
                    secret: secret.secret(),
                    issuer_key: true,
                }
            }
            // Another key under the same header: checked like any token.
            Some(KeyVerdict::Weak(_)) => {}
            None if self.configs.len() >= self.max_configs => {
                counters.weak_configs_not_tracked += 1;
            }
            None => {
                let cost = prepared.cost_of_full_check();
                self.budget.spend_anyway(cost, now_secs);
                counters.weak_full_checks += 1;
                counters.weak_check_blocks += cost;
                let found = prepared.find();
                let verdict = found.map_or(KeyVerdict::NotInList, KeyVerdict::Weak);
                self.configs.insert(config, verdict);
                return match found {
                    Some(secret) => {
                        self.hint(secret);
                        WeakSecretCheck::Found {
                            secret: secret.secret(),
                            issuer_key: true,
                        }
                    }
                    None => WeakSecretCheck::NotFound,
                };
            }
        }
        match self.check_any(None, &prepared, now_secs, counters) {
            Some(found) => self.answer(config, found),
            None => WeakSecretCheck::OverBudget,
        }
    }

    /// A presented token: answered from the cache, from the issuer's key
    /// verdict when the token was issued, from secrets found before, or by
    /// a full check within the budget.
    fn check_presented(
        &mut self,
        config: u64,
        id: u64,
        issued: bool,
        token: &Jwt,
        now_secs: u64,
        counters: &mut TokenCounters,
    ) -> WeakSecretCheck {
        if token.is_unsigned() || !PreparedToken::applies(token) {
            return WeakSecretCheck::NotApplicable;
        }
        if let Some(answer) = self.checked.get(&id) {
            counters.weak_cached += 1;
            return self.answer(config, *answer);
        }
        let verdict = if issued {
            self.configs.get(&config).copied()
        } else {
            None
        };
        if verdict == Some(KeyVerdict::NotInList) {
            return WeakSecretCheck::NotNeeded;
        }
        let Some(prepared) = PreparedToken::new(token) else {
            return WeakSecretCheck::NotApplicable;
        };
        if let Some(KeyVerdict::Weak(secret)) = verdict {
            if prepared.verifies(secret) {
                return self.answer(config, Some(secret));
            }
        }
        let Some(found) = self.check_any(Some(id), &prepared, now_secs, counters) else {
            return WeakSecretCheck::OverBudget;
        };
        // An issued token checked in full tells what the issuer's key is.
        if issued && verdict.is_none() && self.configs.len() < self.max_configs {
            self.configs.insert(
                config,
                found.map_or(KeyVerdict::NotInList, KeyVerdict::Weak),
            );
        }
        self.answer(config, found)
    }

    /// Secrets found before, then the whole list if the budget allows
    /// (`None`: not checked); the answer is remembered under `id`.
    fn check_any(
        &mut self,
        id: Option<u64>,
        prepared: &PreparedToken,
        now_secs: u64,
        counters: &mut TokenCounters,
    ) -> Option<Option<SecretIndex>> {
        if let Some(secret) = self.hints.iter().copied().find(|s| prepared.verifies(*s)) {
            counters.weak_found_by_hint += 1;
            self.remember(id, Some(secret));
            return Some(Some(secret));
        }
        let cost = prepared.cost_of_full_check();
        if cost > self.budget.burst {
            counters.weak_not_checked_too_costly += 1;
            return None;
        }
        if !self.budget.try_spend(cost, now_secs) {
            counters.weak_not_checked_budget += 1;
            return None;
        }
        counters.weak_full_checks += 1;
        counters.weak_check_blocks += cost;
        let found = prepared.find();
        if let Some(secret) = found {
            self.hint(secret);
        }
        self.remember(id, found);
        Some(found)
    }

    fn remember(&mut self, id: Option<u64>, found: Option<SecretIndex>) {
        if let Some(id) = id {
            self.checked.insert(id, found);
        }
    }

    fn hint(&mut self, secret: SecretIndex) {
        self.hints.retain(|s| *s != secret);
        self.hints.insert(0, secret);
        self.hints.truncate(MAX_HINTS);
    }

    fn answer(&self, config: u64, found: Option<SecretIndex>) -> WeakSecretCheck {
        match found {
            Some(secret) => WeakSecretCheck::Found {
                secret: secret.secret(),
                issuer_key: self.configs.get(&config) == Some(&KeyVerdict::Weak(secret)),
            },
            None => WeakSecretCheck::NotFound,
        }
    }
}

/// A map of bounded size that forgets its oldest half at once: entries go
/// into the current generation; when it is full, the previous one is
/// dropped and the current one takes its place. Lookups see both.
struct Generations<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    half: usize,
    resets: u64,
}

impl<K: Hash + Eq, V> Generations<K, V> {
    fn new(capacity: usize) -> Generations<K, V> {
        Generations {
            current: HashMap::new(),
            previous: HashMap::new(),
            half: (capacity / 2).max(1),
            resets: 0,
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    /// Inserts; true when this forgot the oldest generation.
    fn insert(&mut self, key: K, value: V) -> bool {
        let mut forgot = false;
        if self.current.len() >= self.half && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
            self.resets += 1;
            forgot = true;
        }
        self.current.insert(key, value);
        forgot
    }

    fn memory_bytes(&self) -> usize {
        // hashbrown: one control byte per bucket besides the entry.
        (self.current.capacity() + self.previous.capacity()) * (size_of::<(K, V)>() + 1)
    }
}

/// A JWT found in a response body or header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundJwt<'a> {
    pub token: &'a str,
    /// The JSON key (`"access_token": "eyJ…"`) or cookie name (`session=eyJ…`)
    /// right before it, if any.
    pub field: Option<&'a str>,
}

/// The JWT-shaped strings in `text` (three base64url segments, the first
/// starting `eyJ`), at most 16; whether they decode is the caller's check.
pub fn jwts_in(text: &[u8]) -> impl Iterator<Item = FoundJwt<'_>> {
    let mut rest_at = 0usize;
    std::iter::from_fn(move || loop {
        let rest = text.get(rest_at..)?;
        let at = rest_at + memchr::memmem::find(rest, b"eyJ")?;
        let tail = text.get(at..).unwrap_or_default();
        let len = tail
            .iter()
            .position(|b| !is_token_byte(*b))
            .unwrap_or(tail.len());
        rest_at = at + len.max(1);
        let starts_clean = at == 0 || text.get(at - 1).is_some_and(|b| !is_token_byte(*b));
        let token = tail.get(..len).and_then(|t| std::str::from_utf8(t).ok());
        if let Some(token) = token.filter(|t| {
            starts_clean && t.len() <= 8 * 1024 && t.bytes().filter(|b| *b == b'.').count() == 2
        }) {
            return Some(FoundJwt {
                token,
                field: field_before(text.get(..at).unwrap_or_default()),
            });
        }
    })
    .take(MAX_JWTS_PER_TEXT)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// `"name": "` or `name=` ending `before`.
fn field_before(before: &[u8]) -> Option<&str> {
    let window = before.get(before.len().saturating_sub(96)..)?;
    let trimmed = window
        .strip_suffix(b"=")
        .map(|rest| (rest, false))
        .or_else(|| {
            let rest = window.strip_suffix(b"\"")?;
            let rest = rest.trim_ascii_end().strip_suffix(b":")?;
            Some((rest.trim_ascii_end().strip_suffix(b"\"")?, true))
        });
    let (rest, quoted) = trimmed?;
    let start = rest
        .iter()
        .rposition(|b| {
            if quoted {
                *b == b'"'
            } else {
                !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            }
        })
        .map_or(0, |i| i + 1);
    if quoted && start == 0 {
        return None;
    }
    std::str::from_utf8(rest.get(start..)?)
        .ok()
        .filter(|name| !name.is_empty())
}

/// The credential a request carried, as [`TokenChecking`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentedCredential {
    /// No credential of any kind (no `Authorization`, no session cookie, no API key).
    Anonymous,
    Token(TokenCondition),
    /// Another kind of credential: says nothing about token checking.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum TokenCondition {
    /// Nothing wrong that the sensor can see.
    LooksValid,
    /// A token any API that checks tokens rejects.
    Bad(BadToken),
    /// Not a JWT (an opaque token): the sensor cannot tell.
    Opaque,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum BadToken {
    Expired,
    NotYetValid,
    Unsigned,
    Tampered,
    /// JWT-shaped (`eyJ…`, two dots) but not decodable.
    Garbled,
}

impl TokenCondition {
    /// The condition of a bearer token that did not decode as a JWT.
    pub fn undecodable(token: &str) -> TokenCondition {
        let token = token.trim();
        if token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2 {
            TokenCondition::Bad(BadToken::Garbled)
        } else {
            TokenCondition::Opaque
        }
    }
}

/// Whether an endpoint is shown to check the tokens it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Enforcement {
    /// Not enough seen.
    Unknown,
    /// It answered a request without any credential: public, or
    /// authentication is optional (a token may only personalise). A bad
    /// token accepted here is not a finding.
    Optional,
    /// It rejected requests without credential and never served one, but was
    /// not seen rejecting a bad token: it wants a credential; whether it
    /// checks tokens is not shown.
    RequiresCredential,
    /// It rejected a bad token (expired, unsigned, tampered, garbled) and
    /// never served an anonymous request: it checks tokens.
    ChecksTokens,
}

/// The counts behind an [`Enforcement`] (saturating).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EnforcementEvidence {
    pub anonymous_successes: u32,
    pub anonymous_rejections: u32,
    pub bad_token_rejections: u32,
    pub bad_token_successes: u32,
    pub token_successes: u32,
    pub token_rejections: u32,
}

impl EnforcementEvidence {
    pub fn enforcement(&self) -> Enforcement {
        if self.anonymous_successes > 0 {
            Enforcement::Optional
        } else if self.bad_token_rejections > 0 {
            Enforcement::ChecksTokens
        } else if self.anonymous_rejections > 0 {
            Enforcement::RequiresCredential
        } else {
            Enforcement::Unknown
        }
    }
}

/// Per endpoint (any key: the caller's endpoint template), the evidence
/// that it checks tokens. Query before observing the exchange being judged.
pub struct TokenChecking<K> {
    endpoints: HashMap<K, EnforcementEvidence>,
    max_endpoints: usize,
    endpoints_not_tracked: u64,
}

impl<K: Hash + Eq> TokenChecking<K> {
    pub fn new(max_endpoints: usize) -> TokenChecking<K> {
        TokenChecking {
            endpoints: HashMap::new(),
            max_endpoints,
            endpoints_not_tracked: 0,
        }
    }

    /// Records one answered request: 2xx is a success, 401 and 403 a
    /// rejection, anything else says nothing.
    pub fn observe<Q>(&mut self, endpoint: &Q, credential: PresentedCredential, status: u16)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let success = (200..300).contains(&status);
        let rejection = matches!(status, 401 | 403);
        if !success && !rejection {
            return;
        }
        if !self.endpoints.contains_key(endpoint) && self.endpoints.len() >= self.max_endpoints {
            self.endpoints_not_tracked += 1;
            return;
        }
        let evidence = match self.endpoints.get_mut(endpoint) {
            Some(evidence) => evidence,
            None => self.endpoints.entry(endpoint.to_owned()).or_default(),
        };
        bump(evidence, credential, success);
    }

    /// The verdict on `endpoint` and its evidence.
    pub fn enforcement<Q>(&self, endpoint: &Q) -> (Enforcement, EnforcementEvidence)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let evidence = self.endpoints.get(endpoint).copied().unwrap_or_default();
        (evidence.enforcement(), evidence)
    }

    /// Whether `endpoint` is shown to check tokens ([`Enforcement::ChecksTokens`]).
    pub fn checks_tokens<Q>(&self, endpoint: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.enforcement(endpoint).0 == Enforcement::ChecksTokens
    }

    /// Observations of endpoints not tracked (the table was full).
    pub fn endpoints_not_tracked(&self) -> u64 {
        self.endpoints_not_tracked
    }

    /// Bytes of the table (keys counted by their inline size).
    pub fn memory_bytes(&self) -> usize {
        self.endpoints.capacity() * (size_of::<(K, EnforcementEvidence)>() + 1)
    }
}

fn bump(evidence: &mut EnforcementEvidence, credential: PresentedCredential, success: bool) {
    let slot = match (credential, success) {
        (PresentedCredential::Anonymous, true) => &mut evidence.anonymous_successes,
        (PresentedCredential::Anonymous, false) => &mut evidence.anonymous_rejections,
        (PresentedCredential::Token(TokenCondition::Bad(_)), true) => {
            &mut evidence.bad_token_successes
        }
        (PresentedCredential::Token(TokenCondition::Bad(_)), false) => {
            &mut evidence.bad_token_rejections
        }
        (PresentedCredential::Token(_), true) => &mut evidence.token_successes,
        (PresentedCredential::Token(_), false) => &mut evidence.token_rejections,
        (PresentedCredential::Other, _) => return,
    };
    *slot = slot.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{sign_hmac, sign_hs256};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::{json, Value};

    /// The API's key: long, random, not in the wordlist.
    const KEY: &str = "Zq8#strong-random-secret-value-91-f0c3";
    const T0: u64 = 1_700_000_000;
    const API: &str = "api.example.test";
    const ACCESS_SECS: u64 = 900;
    const REFRESH_SECS: u64 = 30 * 86_400;

    fn sign(header: Value, claims: Value) -> Jwt {
        Jwt::decode(&sign_hs256(&header, &claims, KEY)).unwrap()
    }

    fn access(sub: &str, iat: u64) -> Jwt {
        sign(
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"sub": sub, "email": format!("{sub}@example.com"), "iat": iat, "exp": iat + ACCESS_SECS}),
        )
    }

    fn refresh(sub: &str, iat: u64) -> Jwt {
        sign(
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"sub": sub, "token_use": "refresh", "iat": iat, "exp": iat + REFRESH_SECS}),
        )
    }

    /// An API seen issuing three access tokens and two refresh tokens from T0.
    fn trained() -> Tokens {
        let mut tokens = Tokens::new(SecretHasher::default(), TokenSettings::default());
        for (i, user) in ["alice", "bob", "carol"].iter().enumerate() {
            let at = T0 + i as u64 * 10;
            tokens.learn_issued(API, &access(user, at), None, at);
        }
        tokens.learn_issued(API, &refresh("alice", T0), None, T0);
        tokens.learn_issued(API, &refresh("bob", T0 + 10), None, T0 + 10);
        tokens
    }

    fn kinds(judgement: &TokenJudgement) -> Vec<&'static str> {
        judgement
            .reasons
            .iter()
            .map(|r| match r {
                Suspicion::Unsigned { .. } => "unsigned",
                Suspicion::WeakSecret { .. } => "weak_secret",
                Suspicion::PayloadTampered => "payload_tampered",
                Suspicion::SignatureReplaced => "signature_replaced",
                Suspicion::AlgDiffers { .. } => "alg",
                Suspicion::HeaderDiffers { .. } => "header",
                Suspicion::TypDiffers { .. } => "typ",
                Suspicion::KidUnseen { .. } => "kid",
                Suspicion::ClaimsDiffer { .. } => "claims",
                Suspicion::LifetimeDiffers { .. } => "lifetime",
                Suspicion::IatInFuture { .. } => "iat_in_future",
                Suspicion::ExpiresBeyondIssued { .. } => "expires_beyond_issued",
                Suspicion::UnseenWhileWatching { .. } => "unseen_while_watching",
            })
            .collect()
    }

    #[test]
    fn an_issued_token_is_issued_and_clean() {
        let mut tokens = trained();
        let judged = tokens.judge(API, &access("bob", T0 + 10), T0 + 60);
        assert_eq!(judged.provenance, Provenance::Issued);
        assert!(judged.reasons.is_empty(), "{:?}", judged.reasons);
        assert_eq!(judged.validity, Validity::Valid);
        // The API's key was checked once, on its first issued token.
        assert_eq!(judged.weak_secret, WeakSecretCheck::NotNeeded);
        assert_eq!(tokens.counters().weak_full_checks, 1);
        assert_eq!(tokens.counters().issued_learned, 5);
    }

    #[test]
    fn a_token_from_before_watching_began_is_consistent() {
        let mut tokens = trained();
        let old = access("dave", T0 - 300);
        let judged = tokens.judge(API, &old, T0 + 60);
        assert_eq!(
            judged.provenance,
            Provenance::Consistent,
            "{:?}",
            judged.reasons
        );
        assert!(judged.reasons.is_empty());
        // Not issued: checked against the wordlist once, then from the cache.
        assert_eq!(judged.weak_secret, WeakSecretCheck::NotFound);
        let again = tokens.judge(API, &old, T0 + 61);
        assert_eq!(again.weak_secret, WeakSecretCheck::NotFound);
        assert_eq!(tokens.counters().weak_full_checks, 2);
        assert_eq!(tokens.counters().weak_cached, 1);
    }

    /// Tokens without `iat` (FastAPI's `exp` + `sub`): a forged one valid
    /// far longer than any issued is flagged, one shaped and timed like the
    /// issued ones but issued (by its `exp`) while the sensor watched is
    /// unseen; an old one from before watching began is consistent.
    #[test]
    fn tokens_without_iat_are_judged_by_their_expiry() {
        let short = |sub: &str, exp: u64| {
            sign(
                json!({"alg": "HS256", "typ": "JWT"}),
                json!({"sub": sub, "exp": exp}),
            )
        };
        let mut tokens = Tokens::new(SecretHasher::default(), TokenSettings::default());
        for (i, user) in ["alice", "bob", "carol"].iter().enumerate() {
            let at = T0 + i as u64 * 10;
            tokens.learn_issued(API, &short(user, at + 180), None, at);
        }
        let now = T0 + 600;
        let far = tokens.judge(API, &short("admin", now + 3600), now);
        assert_eq!(kinds(&far), ["expires_beyond_issued"]);
        assert!(far.has_strong_reason());
        let unseen = tokens.judge(API, &short("admin", now + 170), now);
        assert_eq!(kinds(&unseen), ["unseen_while_watching"]);
        assert!(!unseen.has_strong_reason());
        // Twin: issued before the sensor watched (expiring soon after it began).
        let old = tokens.judge(API, &short("dave", T0 + 100), T0 + 20);
        assert_eq!(old.provenance, Provenance::Consistent, "{:?}", old.reasons);
    }

    #[test]
    fn a_refresh_token_shape_is_its_own_and_lifetimes_follow_shapes() {
        let mut tokens = trained();
        let judged = tokens.judge(API, &refresh("dave", T0 - 86_400), T0 + 60);
        assert_eq!(
            judged.provenance,
            Provenance::Consistent,
            "{:?}",
            judged.reasons
        );
        // An access token that lives as long as a refresh token is not one the API issues.
        let long_lived = sign(
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"sub": "eve", "email": "eve@example.com", "iat": T0 - 600, "exp": T0 - 600 + REFRESH_SECS}),
        );
        let judged = tokens.judge(API, &long_lived, T0 + 60);
        assert_eq!(judged.provenance, Provenance::Suspicious);
        assert_eq!(kinds(&judged), ["lifetime"]);
        let Suspicion::LifetimeDiffers {
            presented_secs,
            issued,
        } = &judged.reasons[0]
        else {
            unreachable!()
        };
        assert_eq!(*presented_secs, REFRESH_SECS);
        assert_eq!(issued.values, [ACCESS_SECS]);
    }

    #[test]
    fn a_forged_token_with_a_role_claim_is_flagged() {
        let mut tokens = trained();
        let mut claims = json!({"sub": "eve", "email": "eve@example.com", "iat": T0 - 60, "exp": T0 - 60 + ACCESS_SECS});
        claims["role"] = json!("admin");
        let forged = sign(json!({"alg": "HS256", "typ": "JWT"}), claims);
        let judged = tokens.judge(API, &forged, T0 + 60);
        assert_eq!(judged.provenance, Provenance::Suspicious);
        assert_eq!(
            judged.reasons,
            [Suspicion::ClaimsDiffer {
                extra: vec!["role".into()],
                missing: vec![],
                // Refresh tokens carry no email: only these are always there.
                issued_always: vec!["exp".into(), "iat".into(), "sub".into()],
            }]
        );
        assert!(judged.has_strong_reason());
        // A claim the issuer puts in its other tokens (ID tokens carry a
        // nonce), never in tokens of this header.
        let id_token = |sub: &str, iat: u64| {
            sign(
                json!({"alg": "HS256", "typ": "JWT", "kid": "id"}),
                json!({"sub": sub, "nonce": "n", "iat": iat, "exp": iat + 60}),
            )
        };
        for (i, sub) in ["alice", "bob"].iter().enumerate() {
            tokens.learn_issued(API, &id_token(sub, T0 + i as u64), None, T0 + i as u64);
        }
        assert!(tokens
            .judge(API, &id_token("carol", T0 - 100), T0 + 60)
            .reasons
            .is_empty());
        let borrowed = sign(
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"sub": "eve", "email": "e@example.com", "nonce": "n", "iat": T0 - 60, "exp": T0 - 60 + ACCESS_SECS}),
        );
        let judged = tokens.judge(API, &borrowed, T0 + 60);
        assert!(
            matches!(&judged.reasons[..], [Suspicion::ClaimsDiffer { extra, .. }] if extra == &["nonce"]),
            "{:?}",
            judged.reasons
        );
    }

    #[test]
    fn a_forged_token_without_a_role_differs_by_claims_lifetime_or_alg() {
        let mut tokens = trained();
        // The evaluation's case: an administrator token with no role claim,
        // just not shaped like anything the API issues.
        let admin = sign(
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"sub": "admin", "iat": T0 - 60}),
        );
        let judged = tokens.judge(API, &admin, T0 + 60);
        assert_eq!(judged.provenance, Provenance::Suspicious);
        let Suspicion::ClaimsDiffer { extra, missing, .. } = &judged.reasons[0] else {
            panic!("{:?}", judged.reasons)
        };
        assert!(extra.is_empty());
        assert_eq!(missing, &["exp"]);
        let lifetime = sign(
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"sub": "admin", "email": "a@example.com", "iat": T0 - 60, "exp": T0 + 86_400}),
        );
        assert_eq!(kinds(&tokens.judge(API, &lifetime, T0 + 60)), ["lifetime"]);
        let other_alg = Jwt::decode(&sign_hmac(
            Alg::Hs512,
            &json!({"alg": "HS512", "typ": "JWT"}),
            &json!({"sub": "admin", "email": "a@example.com", "iat": T0 - 60, "exp": T0 - 60 + ACCESS_SECS}),
            KEY.as_bytes(),
        ))
        .unwrap();
        let judged = tokens.judge(API, &other_alg, T0 + 60);
        assert_eq!(
            judged.reasons,
            [Suspicion::AlgDiffers {
                presented: Alg::Hs512,
                issued: vec![Alg::Hs256]
            }]
        );
        // A key URL in the header (the `jku` injection) is a header the API never writes.
        let jku = sign(
            json!({"alg": "HS256", "typ": "JWT", "jku": "https://evil.example/keys"}),
            json!({"sub": "admin", "email": "a@example.com", "iat": T0 - 60, "exp": T0 - 60 + ACCESS_SECS}),
        );
        let judged = tokens.judge(API, &jku, T0 + 60);
        assert_eq!(
            judged.reasons,
            [Suspicion::HeaderDiffers {
                extra: vec!["jku".into()],
                missing: vec![]
            }]
        );
        let typ = sign(
            json!({"alg": "HS256", "typ": "at+jwt"}),
            json!({"sub": "admin", "email": "a@example.com", "iat": T0 - 60, "exp": T0 - 60 + ACCESS_SECS}),
        );
        assert_eq!(kinds(&tokens.judge(API, &typ, T0 + 60)), ["typ"]);
    }

    #[test]
    fn alg_none_is_unsigned_and_differs() {
        let mut tokens = trained();
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(
                json!({"sub": "alice", "email": "alice@example.com", "iat": T0, "exp": T0 + ACCESS_SECS})
                    .to_string()
            )
        );
        let judged = tokens.judge(API, &Jwt::decode(&unsigned).unwrap(), T0 + 60);
        assert_eq!(judged.provenance, Provenance::Suspicious);
        assert_eq!(kinds(&judged), ["unsigned", "alg"]);
        assert_eq!(judged.weak_secret, WeakSecretCheck::NotApplicable);
        assert_eq!(judged.condition(), TokenCondition::Bad(BadToken::Unsigned));
        // Even where nothing was learned, unsigned is unsigned.
        let mut fresh = Tokens::default();
        let judged = fresh.judge(API, &Jwt::decode(&unsigned).unwrap(), T0);
        assert_eq!(judged.provenance, Provenance::Unjudged(Unjudged::NoProfile));
        assert_eq!(kinds(&judged), ["unsigned"]);
    }

    #[test]
    fn tampered_payloads_and_replaced_signatures_are_caught() {
        let mut tokens = trained();
        let issued = access("bob", T0 + 10);
        // Claims edited, the issued signature kept (the classic test of
        // whether the API verifies signatures at all).
        let claims = json!({"sub": "admin", "email": "bob@example.com", "iat": T0 + 10, "exp": T0 + 10 + ACCESS_SECS});
        let edited = format!(
            "{}.{}.{}",
            issued.header_segment(),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(issued.signature())
        );
        let judged = tokens.judge(API, &Jwt::decode(&edited).unwrap(), T0 + 60);
        assert_eq!(judged.provenance, Provenance::Suspicious);
        assert_eq!(kinds(&judged), ["payload_tampered"]);
        assert_eq!(judged.condition(), TokenCondition::Bad(BadToken::Tampered));
        let mut signature = issued.signature().to_vec();
        signature[0] ^= 1;
        let resigned = format!(
            "{}.{}",
            issued.signing_input(),
            URL_SAFE_NO_PAD.encode(&signature)
        );
        let judged = tokens.judge(API, &Jwt::decode(&resigned).unwrap(), T0 + 60);
        assert_eq!(kinds(&judged), ["signature_replaced"]);
        // The issued token itself is neither.
        assert!(tokens.judge(API, &issued, T0 + 60).reasons.is_empty());
    }

    #[test]
    fn unseen_tokens_issued_while_watching_are_a_weak_suspicion() {
        let mut tokens = trained();
        let unseen = access("dave", T0 + 30);
        let judged = tokens.judge(API, &unseen, T0 + 60);
        assert_eq!(judged.provenance, Provenance::Suspicious);
        assert_eq!(
            judged.reasons,
            [Suspicion::UnseenWhileWatching {
                iat: T0 + 30,
                watching_since: T0
            }]
        );
        assert!(!judged.has_strong_reason());
        // Within the skew of watching beginning: could have been issued just before.
        let edge = access("erin", T0 + 3);
        assert_eq!(
            tokens.judge(API, &edge, T0 + 60).provenance,
            Provenance::Consistent
        );
    }

    #[test]
    fn forgotten_issued_tokens_are_not_called_unseen() {
        let settings = TokenSettings {
            max_issued_remembered: 4,
            ..TokenSettings::default()
        };
        let mut tokens = Tokens::new(SecretHasher::default(), settings);
        for i in 0..8u64 {
            let at = T0 + i * 10;
            tokens.learn_issued(API, &access(&format!("user{i}"), at), None, at);
        }
        assert!(tokens.counters().issued_memory_resets >= 2);
        // user0 was issued while watching, then forgotten: shaped right, not accused.
        let judged = tokens.judge(API, &access("user0", T0), T0 + 100);
        assert_eq!(
            judged.provenance,
            Provenance::Consistent,
            "{:?}",
            judged.reasons
        );
        assert_eq!(
            tokens
                .judge(API, &access("user7", T0 + 70), T0 + 100)
                .provenance,
            Provenance::Issued
        );
    }

    #[test]
    fn too_few_issued_tokens_or_no_issuer_leave_tokens_unjudged() {
        let mut tokens = Tokens::default();
        tokens.learn_issued(API, &access("alice", T0), None, T0);
        tokens.learn_issued(API, &access("alice", T0), None, T0 + 1);
        let forged = sign(json!({"alg": "HS256"}), json!({"sub": "admin"}));
        let judged = tokens.judge(API, &forged, T0 + 60);
        assert_eq!(
            judged.provenance,
            Provenance::Unjudged(Unjudged::TooFewIssued {
                issued: 1,
                needed: 3
            })
        );
        assert!(judged.reasons.is_empty());
        let judged = tokens.judge("other.example.test", &forged, T0 + 60);
        assert_eq!(judged.provenance, Provenance::Unjudged(Unjudged::NoProfile));
    }

    #[test]
    fn echoed_tokens_are_not_learned_as_issued() {
        let mut tokens = trained();
        let forged = sign(json!({"alg": "HS256"}), json!({"sub": "admin"}));
        let answer = tokens.learn_issued(API, &forged, Some(&forged), T0 + 50);
        assert_eq!(answer, WeakSecretCheck::NotApplicable);
        assert_eq!(tokens.counters().issued_echoes_ignored, 1);
        assert_eq!(
            tokens.judge(API, &forged, T0 + 60).provenance,
            Provenance::Suspicious
        );
    }

    #[test]
    fn tokens_of_another_issuer_are_judged_by_its_iss_and_where_they_are_used() {
        let auth = "auth.example.test";
        let idp = |sub: &str, iat: u64| {
            sign(
                json!({"alg": "HS256", "typ": "JWT", "kid": "2024-01"}),
                json!({"iss": "https://auth.example.test", "sub": sub, "iat": iat, "exp": iat + 300}),
            )
        };
        let mut tokens = Tokens::default();
        // The API host issues tokens of its own, of another kind.
        for i in 0..3 {
            tokens.learn_issued(API, &refresh("x", T0 + i), None, T0 + i);
            tokens.learn_issued(auth, &idp(&format!("u{i}"), T0 + i), None, T0 + i);
        }
        let judged = tokens.judge(API, &idp("zoe", T0 - 100), T0 + 10);
        assert_eq!(
            judged.provenance,
            Provenance::Consistent,
            "{:?}",
            judged.reasons
        );
        // Without `iss`, a host that was shown the issuer's tokens is judged against it.
        assert_eq!(
            tokens
                .judge("orders.example.test", &idp("u1", T0 + 1), T0 + 10)
                .provenance,
            Provenance::Issued
        );
        let no_iss = sign(
            json!({"alg": "HS256", "typ": "JWT", "kid": "2024-01"}),
            json!({"sub": "admin", "iat": T0 - 100, "exp": T0 + 200}),
        );
        let judged = tokens.judge("orders.example.test", &no_iss, T0 + 10);
        assert_eq!(kinds(&judged), ["claims"]);
        // A kid the issuer never used, on a token claiming to be recent.
        let kid = sign(
            json!({"alg": "HS256", "typ": "JWT", "kid": "../../dev/null"}),
            json!({"iss": "https://auth.example.test", "sub": "admin", "iat": T0 + 5, "exp": T0 + 305}),
        );
        let judged = tokens.judge(API, &kid, T0 + 10);
        assert_eq!(kinds(&judged), ["kid"]);
        assert!(!judged.has_strong_reason());
    }

    #[test]
    fn a_weak_secret_from_the_middle_of_the_list_is_found() {
        let list = super::super::jwt_secrets::wordlist();
        let middle = (list.len() / 2..list.len())
            .map(|i| SecretIndex::for_tests(i as u32).secret())
            .find(|s| s.len() >= 6)
            .unwrap();
        let forged = Jwt::decode(&sign_hs256(
            &json!({"alg": "HS256", "typ": "JWT"}),
            &json!({"sub": "admin", "iat": T0}),
            middle,
        ))
        .unwrap();
        let mut tokens = trained();
        let judged = tokens.judge(API, &forged, T0 + 60);
        let WeakSecretCheck::Found { secret, issuer_key } = judged.weak_secret else {
            panic!("{:?}", judged.weak_secret)
        };
        assert_eq!(secret, middle);
        assert!(!issuer_key, "the API's own key is strong");
        assert!(judged.reasons.contains(&Suspicion::WeakSecret {
            secret: middle,
            issuer_key: false
        }));
        // A second token with the same secret is found from the hint, no full check.
        let checks = tokens.counters().weak_full_checks;
        let again = Jwt::decode(&sign_hs256(
            &json!({"alg": "HS256"}),
            &json!({"sub": "root"}),
            middle,
        ))
        .unwrap();
        assert!(matches!(
            tokens.judge(API, &again, T0 + 61).weak_secret,
            WeakSecretCheck::Found { .. }
        ));
        assert_eq!(tokens.counters().weak_full_checks, checks);
        assert_eq!(tokens.counters().weak_found_by_hint, 1);
    }

    #[test]
    fn an_api_signing_with_a_weak_key_is_found_on_its_first_issued_token() {
        let mut tokens = Tokens::default();
        let weak = |sub: &str, iat: u64| {
            Jwt::decode(&sign_hs256(
                &json!({"alg": "HS256", "typ": "JWT"}),
                &json!({"sub": sub, "iat": iat, "exp": iat + 60}),
                "your-256-bit-secret",
            ))
            .unwrap()
        };
        let first = tokens.learn_issued(API, &weak("a", T0), None, T0);
        assert_eq!(
            first,
            WeakSecretCheck::Found {
                secret: "your-256-bit-secret",
                issuer_key: true
            }
        );
        // Later issued tokens cost one HMAC, not a list.
        let second = tokens.learn_issued(API, &weak("b", T0 + 1), None, T0 + 1);
        assert_eq!(second, first);
        assert_eq!(tokens.counters().weak_full_checks, 1);
        let judged = tokens.judge(API, &weak("b", T0 + 1), T0 + 2);
        assert_eq!(judged.provenance, Provenance::Issued);
        assert_eq!(judged.weak_secret, first);
        // A token the API never issued, minted with the API's own weak key.
        let minted = tokens.judge(API, &weak("admin", T0 + 2), T0 + 3);
        assert!(minted.reasons.contains(&Suspicion::WeakSecret {
            secret: "your-256-bit-secret",
            issuer_key: true
        }));
        assert_eq!(tokens.counters().weak_full_checks, 1);
    }

    #[test]
    fn a_strong_secret_is_not_found() {
        let mut tokens = Tokens::default();
        let judged = tokens.judge(API, &access("alice", T0), T0);
        assert_eq!(judged.weak_secret, WeakSecretCheck::NotFound);
        assert!(judged.reasons.is_empty());
        let rs256 = format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"sub":"a"}"#)
        );
        let judged = tokens.judge(API, &Jwt::decode(&rs256).unwrap(), T0);
        assert_eq!(judged.weak_secret, WeakSecretCheck::NotApplicable);
    }

    #[test]
    fn checks_are_budgeted_in_packet_time_and_each_token_checked_once() {
        let per_token = PreparedToken::new(&access("u0", T0))
            .unwrap()
            .cost_of_full_check();
        let settings = TokenSettings {
            weak_check_blocks_per_sec: per_token / 10,
            weak_check_burst_blocks: per_token * 2,
            ..TokenSettings::default()
        };
        let mut tokens = Tokens::new(SecretHasher::default(), settings);
        let answers: Vec<WeakSecretCheck> = (0..3)
            .map(|i| {
                tokens
                    .judge(API, &access(&format!("u{i}"), T0), T0)
                    .weak_secret
            })
            .collect();
        assert_eq!(
            answers,
            [
                WeakSecretCheck::NotFound,
                WeakSecretCheck::NotFound,
                WeakSecretCheck::OverBudget
            ]
        );
        assert_eq!(tokens.counters().weak_not_checked_budget, 1);
        // Nine seconds later the budget has refilled 0.9 of a check: not yet.
        let late = access("u2", T0);
        assert_eq!(
            tokens.judge(API, &late, T0 + 9).weak_secret,
            WeakSecretCheck::OverBudget
        );
        assert_eq!(
            tokens.judge(API, &late, T0 + 11).weak_secret,
            WeakSecretCheck::NotFound
        );
        // Checked tokens are answered from the cache, whatever the budget.
        for i in 0..3 {
            let answer = tokens.judge(API, &access(&format!("u{i}"), T0), T0 + 11);
            assert_eq!(answer.weak_secret, WeakSecretCheck::NotFound);
        }
        let counters = tokens.counters();
        assert_eq!(counters.weak_full_checks, 3);
        assert_eq!(counters.weak_check_blocks, 3 * per_token);
        assert_eq!(counters.weak_cached, 3);
        // A token whose single check costs more than the whole burst is never tried.
        let huge = sign(json!({"alg": "HS256"}), json!({"pad": "x".repeat(4000)}));
        assert_eq!(
            tokens.judge(API, &huge, T0 + 1000).weak_secret,
            WeakSecretCheck::OverBudget
        );
        assert_eq!(tokens.counters().weak_not_checked_too_costly, 1);
    }

    #[test]
    fn the_check_cache_is_bounded_and_its_resets_counted() {
        let settings = TokenSettings {
            max_checks_remembered: 2,
            ..TokenSettings::default()
        };
        let mut tokens = Tokens::new(SecretHasher::default(), settings);
        for i in 0..3 {
            tokens.judge(API, &access(&format!("u{i}"), T0), T0);
        }
        assert_eq!(tokens.counters().weak_cache_resets, 2);
        assert!(tokens.weak.checked.current.len() + tokens.weak.checked.previous.len() <= 2);
    }

    #[test]
    fn clock_skew_and_the_issuers_clock_are_allowed() {
        let mut tokens = trained();
        let token = access("alice", T0);
        let exp = T0 + ACCESS_SECS;
        assert_eq!(tokens.judge(API, &token, exp + 5).validity, Validity::Valid);
        assert_eq!(
            tokens.judge(API, &token, exp + 6).validity,
            Validity::Expired {
                expired_for_secs: 6
            }
        );
        // A lifetime one second off (exp rounded up) is the same lifetime.
        let rounded = sign(
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"sub": "dan", "email": "dan@example.com", "iat": T0 - 100, "exp": T0 - 100 + ACCESS_SECS + 1}),
        );
        assert!(tokens.judge(API, &rounded, T0).reasons.is_empty());
        let lifetime = |extra_secs: u64| {
            sign(
                json!({"alg": "HS256", "typ": "JWT"}),
                json!({"sub": "dan", "email": "dan@example.com", "iat": T0 - 100, "exp": T0 - 100 + ACCESS_SECS + extra_secs}),
            )
        };
        assert!(tokens.judge(API, &lifetime(5), T0).reasons.is_empty());
        assert_eq!(kinds(&tokens.judge(API, &lifetime(6), T0)), ["lifetime"]);
        // iat a little ahead is skew; far ahead is not.
        let ahead = access("fay", T0 + 64);
        assert!(!kinds(&tokens.judge(API, &ahead, T0 + 60)).contains(&"iat_in_future"));
        let future = access("gus", T0 + 600);
        assert!(kinds(&tokens.judge(API, &future, T0 + 60)).contains(&"iat_in_future"));
        let nbf = sign(json!({"alg": "HS256"}), json!({"nbf": T0 + 100}));
        assert_eq!(
            tokens.judge(API, &nbf, T0).validity,
            Validity::NotYetValid { valid_in_secs: 100 }
        );
        // An issuer whose clock runs 40 s behind the sensor's: its tokens
        // expire 40 s later than the sensor's clock says.
        let mut slow = Tokens::default();
        for i in 0..3 {
            slow.learn_issued(API, &access(&format!("s{i}"), T0 - 40 + i), None, T0 + i);
        }
        let token = access("s0", T0 - 40);
        let exp = T0 - 40 + ACCESS_SECS;
        assert_eq!(slow.judge(API, &token, exp + 30).validity, Validity::Valid);
        assert!(matches!(
            slow.judge(API, &token, exp + 50).validity,
            Validity::Expired { .. }
        ));
    }

    #[test]
    fn profiles_are_bounded() {
        let settings = TokenSettings {
            max_issuers: 2,
            max_families_per_issuer: 1,
            ..TokenSettings::default()
        };
        let mut tokens = Tokens::new(SecretHasher::default(), settings);
        for host in ["a", "b", "c"] {
            tokens.learn_issued(host, &access("x", T0), None, T0);
        }
        assert_eq!(tokens.counters().issuers_not_profiled, 1);
        let other_family = sign(json!({"alg": "HS256"}), json!({"sub": "y"}));
        tokens.learn_issued("a", &other_family, None, T0);
        assert_eq!(tokens.counters().shapes_not_learned, 1);
        let many = (0..100)
            .map(|i| (format!("c{i}"), json!(i)))
            .collect::<serde_json::Map<_, _>>();
        tokens.learn_issued(
            "a",
            &sign(json!({"alg": "HS256", "typ": "JWT"}), Value::Object(many)),
            None,
            T0,
        );
        assert_eq!(tokens.counters().names_not_indexed, 1);
        assert!(tokens.memory_bytes() > 0);
        // "a" missed part of what it issues: a token unlike what it learned
        // is not accused, one like it is still consistent.
        tokens.learn_issued("a", &access("y", T0 + 1), None, T0 + 1);
        tokens.learn_issued("a", &access("z", T0 + 2), None, T0 + 2);
        let unlike = sign(json!({"alg": "HS256"}), json!({"sub": "w"}));
        let judged = tokens.judge("a", &unlike, T0 + 10);
        assert_eq!(
            judged.provenance,
            Provenance::Unjudged(Unjudged::ProfileIncomplete)
        );
        assert!(judged.reasons.is_empty());
        assert_eq!(
            tokens
                .judge("a", &access("old", T0 - 100), T0 + 10)
                .provenance,
            Provenance::Consistent
        );
    }

    #[test]
    fn jwts_are_found_in_json_fields_and_cookies() {
        let a = access("alice", T0);
        let r = refresh("alice", T0);
        let (a, r) = (
            format!(
                "{}.{}",
                a.signing_input(),
                URL_SAFE_NO_PAD.encode(a.signature())
            ),
            format!(
                "{}.{}",
                r.signing_input(),
                URL_SAFE_NO_PAD.encode(r.signature())
            ),
        );
        let body =
            format!(r#"{{"access_token": "{a}","refresh_token":"{r}","note":"xeyJnot.a.token"}}"#);
        let found: Vec<FoundJwt> = jwts_in(body.as_bytes()).collect();
        assert_eq!(
            found,
            [
                FoundJwt {
                    token: &a,
                    field: Some("access_token")
                },
                FoundJwt {
                    token: &r,
                    field: Some("refresh_token")
                }
            ]
        );
        let cookie = format!("session={a}; Path=/; HttpOnly");
        let found: Vec<FoundJwt> = jwts_in(cookie.as_bytes()).collect();
        assert_eq!(found[0].field, Some("session"));
        assert_eq!(found[0].token, a);
        // Two segments is not a JWS; a list of a thousand tokens yields 16.
        assert_eq!(jwts_in(b"eyJhbGciOiJIUzI1NiJ9.eyJ9").count(), 0);
        let many = format!("[{}]", vec![format!("\"{a}\""); 1000].join(","));
        assert_eq!(jwts_in(many.as_bytes()).count(), 16);
        assert_eq!(
            jwts_in(format!("<b>{a}</b>").as_bytes())
                .next()
                .unwrap()
                .field,
            None
        );
    }

    #[test]
    fn expired_tokens_count_only_where_the_endpoint_checks_tokens() {
        let mut checking: TokenChecking<String> = TokenChecking::new(10);
        let expired = PresentedCredential::Token(TokenCondition::Bad(BadToken::Expired));
        let good = PresentedCredential::Token(TokenCondition::LooksValid);
        // /me: rejects an expired token, never serves anonymous callers.
        checking.observe("GET /me", PresentedCredential::Anonymous, 401);
        assert_eq!(
            checking.enforcement("GET /me").0,
            Enforcement::RequiresCredential
        );
        checking.observe("GET /me", expired, 401);
        checking.observe("GET /me", good, 200);
        assert!(checking.checks_tokens("GET /me"));
        // /products: public, personalised when a token is sent; an expired
        // token accepted there is the endpoint ignoring it.
        checking.observe("GET /products", PresentedCredential::Anonymous, 200);
        checking.observe("GET /products", expired, 401);
        checking.observe("GET /products", expired, 200);
        let (verdict, evidence) = checking.enforcement("GET /products");
        assert_eq!(verdict, Enforcement::Optional);
        assert!(!checking.checks_tokens("GET /products"));
        assert_eq!(
            evidence,
            EnforcementEvidence {
                anonymous_successes: 1,
                bad_token_rejections: 1,
                bad_token_successes: 1,
                ..EnforcementEvidence::default()
            }
        );
        // Accepting good tokens and refusing none shows nothing.
        checking.observe("GET /feed", good, 200);
        checking.observe("GET /feed", PresentedCredential::Other, 200);
        checking.observe("GET /feed", good, 500);
        assert_eq!(checking.enforcement("GET /feed").0, Enforcement::Unknown);
        assert_eq!(checking.enforcement("GET /never").0, Enforcement::Unknown);
    }

    #[test]
    fn the_endpoint_table_is_bounded() {
        let mut checking: TokenChecking<String> = TokenChecking::new(2);
        for key in ["a", "b", "c", "a"] {
            checking.observe(key, PresentedCredential::Anonymous, 200);
        }
        assert_eq!(checking.endpoints_not_tracked(), 1);
        assert_eq!(checking.enforcement("a").1.anonymous_successes, 2);
        assert_eq!(checking.enforcement("c").0, Enforcement::Unknown);
        assert!(checking.memory_bytes() > 0);
    }

    #[test]
    fn undecodable_bearers_are_garbled_only_when_jwt_shaped() {
        assert_eq!(
            TokenCondition::undecodable("eyJhbGciOi.broken.x"),
            TokenCondition::Bad(BadToken::Garbled)
        );
        assert_eq!(
            TokenCondition::undecodable("3f9a1c0e-opaque"),
            TokenCondition::Opaque
        );
        let judged = Tokens::default().judge(API, &access("a", T0), T0 + ACCESS_SECS + 60);
        assert_eq!(judged.condition(), TokenCondition::Bad(BadToken::Expired));
    }
}

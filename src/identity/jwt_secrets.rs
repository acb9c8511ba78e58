//! The public wordlist of JWT signing secrets, and the one check of an
//! HMAC-signed token (HS256, HS384, HS512) against it.
//!
//! The list is wallarm/jwt-secrets (MIT; source, commit and licence in
//! `data/jwt-secrets/`), embedded gzip-compressed and decompressed on first
//! use, so the sensor needs no file at run time and a sensor that never sees
//! an HMAC token never pays for it. For HS256, the common case, the two HMAC
//! key blocks of every secret are hashed once (inner and outer SHA-256
//! state, a 6.6 MB table built on the first HS256 token): a check then costs,
//! per secret, the token's message blocks plus one outer block instead of
//! two blocks more. HS384 and HS512 are rare, and their table would hold
//! 13 MB each, so their key blocks are hashed per check instead.
//!
//! This module owns the list and the arithmetic; which tokens are worth a
//! check, how often, and the cache of answers belong to `identity::tokens`.
#![cfg_attr(
    not(test),
    deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)
)]

use crate::jwt::{Alg, Jwt};
use sha2::block_api::{compress256, compress512};
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::io::Read;
use std::sync::OnceLock;

static LIST_GZ: &[u8] = include_bytes!("../../data/jwt-secrets/jwt.secrets.list.gz");

/// Defaults from tutorials and libraries that the wordlist lacks (the rest of
/// the sensor's former built-in list is in it).
const EXTRA_SECRETS: &[&str] = &[
    "jwtkey",
    "key",
    "private",
    "privatekey",
    "hmac",
    "hs256",
    "gottacatchemall",
];

/// The embedded list decompresses to 1.2 MB; a damaged embed cannot make the
/// sensor hold more than this.
const MAX_LIST_BYTES: u64 = 8 << 20;

/// One SHA-512 block compression costs about this many SHA-256 ones
/// (measured by `benches/jwt_secrets.rs` on x86-64 with SHA extensions,
/// which speed up SHA-256 only: 31 ns against 176 ns). Budgets are counted
/// in SHA-256 blocks.
pub const SHA512_BLOCK_COST: u64 = 6;

const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const SHA384_IV: [u64; 8] = [
    0xcbbb9d5dc1059ed8,
    0x629a292a367cd507,
    0x9159015a3070dd17,
    0x152fecd8f70e5939,
    0x67332667ffc00b31,
    0x8eb44a8768581511,
    0xdb0c2e0d64f98fa7,
    0x47b5481dbefa4fa4,
];
const SHA512_IV: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

/// The secrets, back to back, decompressed once per process.
pub struct Wordlist {
    text: String,
    /// End offset in `text` of each secret (its start is the previous end).
    ends: Vec<u32>,
    /// Lines in the embedded file, blank ones included.
    upstream_lines: usize,
    /// Lines that repeat an earlier secret (checked once).
    duplicates_skipped: usize,
}

/// A secret's position in the [`Wordlist`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretIndex(u32);

impl SecretIndex {
    #[cfg(test)]
    pub(crate) fn for_tests(index: u32) -> SecretIndex {
        SecretIndex(index)
    }

    /// The secret itself (it is public: it comes from a published list).
    pub fn secret(self) -> &'static str {
        wordlist().get(self).unwrap_or("")
    }
}

static WORDLIST: OnceLock<Wordlist> = OnceLock::new();
type States256 = [[u32; 8]; 2];
type States512 = [[u64; 8]; 2];
static HS256_STATES: OnceLock<Vec<States256>> = OnceLock::new();

/// The wordlist, decompressed on the first call.
pub fn wordlist() -> &'static Wordlist {
    WORDLIST.get_or_init(Wordlist::load)
}

impl Wordlist {
    /// Decompresses the embedded list anew (benches; [`wordlist`] keeps one).
    pub fn load() -> Wordlist {
        let mut raw = String::new();
        // The embed is checked by a test; were it damaged anyway, the sensor
        // runs with the few built-in secrets rather than stopping.
        let decoded = flate2::read::GzDecoder::new(LIST_GZ)
            .take(MAX_LIST_BYTES)
            .read_to_string(&mut raw);
        if decoded.is_err() {
            raw.clear();
        }
        let mut list = Wordlist {
            text: String::with_capacity(raw.len()),
            ends: Vec::new(),
            upstream_lines: 0,
            duplicates_skipped: 0,
        };
        let mut seen = std::collections::HashSet::new();
        let lines = raw.split('\n').filter(|line| !line.is_empty());
        for line in lines {
            list.upstream_lines += 1;
            let secret = line.strip_suffix('\r').unwrap_or(line);
            if secret.is_empty() {
                continue;
            }
            if !seen.insert(secret) {
                list.duplicates_skipped += 1;
                continue;
            }
            list.push(secret);
        }
        for secret in EXTRA_SECRETS {
            if seen.insert(secret) {
                list.push(secret);
            }
        }
        list.text.shrink_to_fit();
        list.ends.shrink_to_fit();
        list
    }

    fn push(&mut self, secret: &str) {
        let end = self.text.len().saturating_add(secret.len());
        if let Ok(end) = u32::try_from(end) {
            self.text.push_str(secret);
            self.ends.push(end);
        }
    }

    /// How many distinct secrets a check tries.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Lines in the embedded file and how many repeated an earlier one.
    pub fn upstream_lines(&self) -> (usize, usize) {
        (self.upstream_lines, self.duplicates_skipped)
    }

    /// The secret at `index`.
    pub fn get(&self, index: SecretIndex) -> Option<&str> {
        let i = usize::try_from(index.0).ok()?;
        let start = match i.checked_sub(1) {
            Some(previous) => *self.ends.get(previous)?,
            None => 0,
        };
        let end = *self.ends.get(i)?;
        self.text.get(start as usize..end as usize)
    }

    #[cfg(test)]
    fn position(&self, secret: &str) -> Option<SecretIndex> {
        (0..self.ends.len())
            .filter_map(|i| u32::try_from(i).ok().map(SecretIndex))
            .find(|&i| self.get(i) == Some(secret))
    }

    /// Bytes this list holds.
    pub fn memory_bytes(&self) -> usize {
        self.text.capacity() + self.ends.capacity() * 4
    }

    fn secrets(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter().copied()).map(|(start, end)| {
            self.text
                .as_bytes()
                .get(start as usize..end as usize)
                .unwrap_or_default()
        })
    }
}

/// Bytes held by the list and by the HS256 key-state table, once built.
pub fn memory_bytes() -> usize {
    let list = WORDLIST.get().map_or(0, Wordlist::memory_bytes);
    let table = HS256_STATES
        .get()
        .map_or(0, |t| t.capacity() * size_of::<States256>());
    list + table
}

fn states256() -> &'static [States256] {
    HS256_STATES.get_or_init(|| {
        wordlist()
            .secrets()
            .map(|secret| {
                let mut key = [0u8; 64];
                copy_key(&mut key, secret, |k| Sha256::digest(k).to_vec());
                [pad_state256(&key, 0x36), pad_state256(&key, 0x5c)]
            })
            .collect()
    })
}

/// The HS384 or HS512 inner and outer states of one secret.
fn states512(alg: Alg, secret: &[u8]) -> States512 {
    let iv = if alg == Alg::Hs384 {
        SHA384_IV
    } else {
        SHA512_IV
    };
    let mut key = [0u8; 128];
    copy_key(&mut key, secret, |k| match alg {
        Alg::Hs384 => Sha384::digest(k).to_vec(),
        _ => Sha512::digest(k).to_vec(),
    });
    [pad_state512(&key, 0x36, iv), pad_state512(&key, 0x5c, iv)]
}

/// The HMAC key block: the secret, or its hash when longer than a block.
fn copy_key(block: &mut [u8], secret: &[u8], hash: impl Fn(&[u8]) -> Vec<u8>) {
    let hashed;
    let key = if secret.len() > block.len() {
        hashed = hash(secret);
        hashed.as_slice()
    } else {
        secret
    };
    for (slot, byte) in block.iter_mut().zip(key) {
        *slot = *byte;
    }
}

fn pad_state256(key: &[u8; 64], pad: u8) -> [u32; 8] {
    let mut block = *key;
    block.iter_mut().for_each(|b| *b ^= pad);
    let mut state = SHA256_IV;
    compress256(&mut state, std::slice::from_ref(&block));
    state
}

fn pad_state512(key: &[u8; 128], pad: u8, iv: [u64; 8]) -> [u64; 8] {
    let mut block = *key;
    block.iter_mut().for_each(|b| *b ^= pad);
    let mut state = iv;
    compress512(&mut state, std::slice::from_ref(&block));
    state
}

/// The SHA padding of `message` hashed after one key block of `BLOCK`
/// bytes: the blocks the inner hash compresses for every secret.
fn padded_blocks<const BLOCK: usize>(message: &[u8], length_bytes: usize) -> Vec<[u8; BLOCK]> {
    let total_bits = ((BLOCK + message.len()) as u128) * 8;
    let mut bytes = Vec::with_capacity(message.len() + 1 + BLOCK + length_bytes);
    bytes.extend_from_slice(message);
    bytes.push(0x80);
    while (bytes.len() + length_bytes) % BLOCK != 0 {
        bytes.push(0);
    }
    let length = total_bits.to_be_bytes();
    bytes.extend_from_slice(length.get(16 - length_bytes..).unwrap_or_default());
    bytes
        .chunks_exact(BLOCK)
        .filter_map(|chunk| <[u8; BLOCK]>::try_from(chunk).ok())
        .collect()
}

/// The outer block after `digest_bytes` of inner digest: padding and length
/// already in place, the digest written per secret.
fn outer_template<const BLOCK: usize>(digest_bytes: usize, length_bytes: usize) -> [u8; BLOCK] {
    let mut block = [0u8; BLOCK];
    if let Some(marker) = block.get_mut(digest_bytes) {
        *marker = 0x80;
    }
    let bits = ((BLOCK + digest_bytes) as u128 * 8).to_be_bytes();
    let tail = block.get_mut(BLOCK - length_bytes..).unwrap_or_default();
    tail.copy_from_slice(bits.get(16 - length_bytes..).unwrap_or_default());
    block
}

/// A token made ready for checks: its message padded once, its signature
/// as state words. Checking it against one secret or the whole list reuses
/// both.
pub struct PreparedToken {
    hash: Prepared,
}

enum Prepared {
    Sha256 {
        blocks: Vec<[u8; 64]>,
        expected: [u32; 8],
    },
    Sha512 {
        alg: Alg,
        blocks: Vec<[u8; 128]>,
        expected: [u64; 8],
        /// 6 for HS384 (a truncated SHA-512 state), 8 for HS512.
        words: usize,
    },
}

impl PreparedToken {
    /// Whether a token can be checked: HS256/HS384/HS512 with a signature
    /// of that algorithm's length.
    pub fn applies(jwt: &Jwt) -> bool {
        let length = match jwt.algorithm() {
            Alg::Hs256 => 32,
            Alg::Hs384 => 48,
            Alg::Hs512 => 64,
            _ => return false,
        };
        jwt.signature().len() == length
    }

    /// `None` unless [`PreparedToken::applies`].
    pub fn new(jwt: &Jwt) -> Option<PreparedToken> {
        let message = jwt.signing_input().as_bytes();
        let signature = jwt.signature();
        let hash = match jwt.algorithm() {
            Alg::Hs256 if signature.len() == 32 => {
                let mut expected = [0u32; 8];
                for (word, bytes) in expected.iter_mut().zip(signature.chunks_exact(4)) {
                    *word = u32::from_be_bytes(bytes.try_into().ok()?);
                }
                Prepared::Sha256 {
                    blocks: padded_blocks::<64>(message, 8),
                    expected,
                }
            }
            alg @ (Alg::Hs384 | Alg::Hs512) => {
                let words = if alg == Alg::Hs384 { 6 } else { 8 };
                if signature.len() != words * 8 {
                    return None;
                }
                let mut expected = [0u64; 8];
                for (word, bytes) in expected.iter_mut().zip(signature.chunks_exact(8)) {
                    *word = u64::from_be_bytes(bytes.try_into().ok()?);
                }
                Prepared::Sha512 {
                    alg,
                    blocks: padded_blocks::<128>(message, 16),
                    expected,
                    words,
                }
            }
            _ => return None,
        };
        Some(PreparedToken { hash })
    }

    /// What one secret costs, in SHA-256 block compressions: the message
    /// blocks and the outer block, plus the two key blocks for HS384/HS512.
    pub fn cost_per_secret(&self) -> u64 {
        match &self.hash {
            Prepared::Sha256 { blocks, .. } => blocks.len() as u64 + 1,
            Prepared::Sha512 { blocks, .. } => (blocks.len() as u64 + 3) * SHA512_BLOCK_COST,
        }
    }

    /// What a check against the whole list costs, in SHA-256 block compressions.
    pub fn cost_of_full_check(&self) -> u64 {
        self.cost_per_secret()
            .saturating_mul(wordlist().len() as u64)
    }

    /// Whether the token's signature is the HMAC of its content under `secret`.
    pub fn verifies(&self, secret: SecretIndex) -> bool {
        let i = secret.0 as usize;
        match &self.hash {
            Prepared::Sha256 { blocks, expected } => states256()
                .get(i)
                .is_some_and(|states| check256(states, blocks, expected)),
            Prepared::Sha512 {
                alg,
                blocks,
                expected,
                words,
            } => wordlist().get(secret).is_some_and(|key| {
                check512(&states512(*alg, key.as_bytes()), blocks, expected, *words)
            }),
        }
    }

    /// The first secret of the list the token is signed with, trying all.
    pub fn find(&self) -> Option<SecretIndex> {
        let found = match &self.hash {
            Prepared::Sha256 { blocks, expected } => states256()
                .iter()
                .position(|states| check256(states, blocks, expected)),
            Prepared::Sha512 {
                alg,
                blocks,
                expected,
                words,
            } => wordlist()
                .secrets()
                .position(|key| check512(&states512(*alg, key), blocks, expected, *words)),
        };
        found.and_then(|i| u32::try_from(i).ok()).map(SecretIndex)
    }
}

fn check256(states: &States256, blocks: &[[u8; 64]], expected: &[u32; 8]) -> bool {
    let [inner, outer] = states;
    let mut state = *inner;
    compress256(&mut state, blocks);
    let mut block = outer_template::<64>(32, 8);
    for (bytes, word) in block.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    let mut state = *outer;
    compress256(&mut state, std::slice::from_ref(&block));
    state == *expected
}

fn check512(states: &States512, blocks: &[[u8; 128]], expected: &[u64; 8], words: usize) -> bool {
    let [inner, outer] = states;
    let mut state = *inner;
    compress512(&mut state, blocks);
    let mut block = outer_template::<128>(words * 8, 16);
    for (bytes, word) in block.chunks_exact_mut(8).zip(state).take(words) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    let mut state = *outer;
    compress512(&mut state, std::slice::from_ref(&block));
    state.iter().zip(expected).take(words).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_secret(jwt: &Jwt) -> Option<&'static str> {
        PreparedToken::new(jwt)?.find().map(SecretIndex::secret)
    }
    use crate::jwt::{sign_hmac, sign_hs256};
    use serde_json::json;

    fn token(alg: Alg, secret: &[u8], claims: serde_json::Value) -> Jwt {
        let header = json!({"alg": alg.as_str(), "typ": "JWT"});
        Jwt::decode(&sign_hmac(alg, &header, &claims, secret)).unwrap()
    }

    #[test]
    fn the_embedded_list_is_the_whole_public_list() {
        let list = wordlist();
        let (lines, duplicates) = list.upstream_lines();
        // wallarm/jwt-secrets at 99e2360: 103,979 lines, one of them blank,
        // 197 repeating an earlier one; the extras are all new.
        assert_eq!((lines, duplicates), (103_979, 197));
        assert_eq!(list.len(), 103_979 - 1 - 197 + EXTRA_SECRETS.len());
        for secret in ["secret", "your-256-bit-secret", "shhhhh", "gottacatchemall"] {
            assert!(list.position(secret).is_some(), "{secret}");
        }
        assert!(list.position("k9$Lq2!vR7@pZ4#mW8^tY1&cB6*nF3").is_none());
        // Carriage returns of the upstream file are not part of any secret.
        assert!(!list.text.contains('\r'));
    }

    #[test]
    fn a_secret_from_the_middle_of_the_list_is_found_for_each_hmac_alg() {
        let list = wordlist();
        let middle = SecretIndex(list.len() as u32 / 2);
        let secret = middle.secret();
        assert!(!secret.is_empty());
        for alg in [Alg::Hs256, Alg::Hs384, Alg::Hs512] {
            let jwt = token(alg, secret.as_bytes(), json!({"sub": "mallory", "iat": 1}));
            let prepared = PreparedToken::new(&jwt).unwrap();
            // The list may hold a secret earlier that is HMAC-equivalent
            // (same key block); it must verify the token all the same.
            let found = prepared.find().unwrap();
            assert!(found.0 <= middle.0, "{alg}");
            assert!(prepared.verifies(found));
            assert!(prepared.verifies(middle));
            assert!(!prepared.verifies(SecretIndex(0)) || found.0 == 0);
        }
    }

    #[test]
    fn matches_the_hmac_crate_on_every_block_boundary_and_long_keys() {
        let list = wordlist();
        // Secrets longer than a SHA-256 block (hashed into the key) and short ones.
        let long = (0..list.len() as u32)
            .map(SecretIndex)
            .find(|&i| i.secret().len() > 64)
            .unwrap();
        let longer = (0..list.len() as u32)
            .map(SecretIndex)
            .find(|&i| i.secret().len() > 128)
            .unwrap();
        for secret in [long, longer, SecretIndex(3)] {
            for pad in 0..140 {
                for alg in [Alg::Hs256, Alg::Hs384, Alg::Hs512] {
                    let claims = json!({"p": "x".repeat(pad)});
                    let jwt = token(alg, secret.secret().as_bytes(), claims.clone());
                    let prepared = PreparedToken::new(&jwt).unwrap();
                    assert!(prepared.verifies(secret), "{alg} pad {pad}");
                    let other = token(alg, b"not-in-the-list-8d1f0a", claims);
                    assert!(!PreparedToken::new(&other).unwrap().verifies(secret));
                }
            }
        }
    }

    #[test]
    fn a_strong_secret_is_not_found_and_other_algs_are_not_checked() {
        let strong = token(
            Alg::Hs256,
            b"k9$Lq2!vR7@pZ4#mW8^tY1&cB6*nF3",
            json!({"sub": "x"}),
        );
        assert_eq!(find_secret(&strong), None);
        let weak =
            Jwt::decode(&sign_hs256(&json!({"alg": "HS256"}), &json!({}), "secret")).unwrap();
        assert_eq!(find_secret(&weak), Some("secret"));
        // A signature of the wrong length, an RS256 header, alg none: nothing to try.
        let short = format!("{}.c2ln", weak.signing_input());
        assert!(PreparedToken::new(&Jwt::decode(&short).unwrap()).is_none());
        assert!(!PreparedToken::applies(&Jwt::decode(&short).unwrap()));
        assert!(PreparedToken::applies(&weak));
        let rs = weak
            .signing_input()
            .replacen(weak.header_segment(), "eyJhbGciOiJSUzI1NiJ9", 1);
        let rs = Jwt::decode(&format!("{rs}.c2ln")).unwrap();
        assert!(PreparedToken::new(&rs).is_none());
        assert!(memory_bytes() > 0);
    }

    #[test]
    fn costs_count_message_blocks() {
        let short = token(Alg::Hs256, b"k", json!({}));
        let long = token(Alg::Hs256, b"k", json!({"p": "x".repeat(200)}));
        let p = PreparedToken::new(&short).unwrap();
        assert_eq!(p.cost_per_secret(), 2);
        assert!(PreparedToken::new(&long).unwrap().cost_per_secret() > 4);
        let wide = PreparedToken::new(&token(Alg::Hs512, b"k", json!({}))).unwrap();
        assert_eq!(wide.cost_per_secret(), 4 * SHA512_BLOCK_COST);
        assert_eq!(p.cost_of_full_check(), 2 * wordlist().len() as u64);
    }
}

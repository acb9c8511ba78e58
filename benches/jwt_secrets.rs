//! The cost of checking JWTs against the public wordlist of secrets
//! (`identity::jwt_secrets`) and of judging presented tokens
//! (`identity::tokens`).
//!
//! One-shot numbers are printed first (they cannot be repeated in one
//! process): decompressing the embedded list, building the HS256 key-state
//! table, and the memory both hold. Run with
//! `cargo bench --bench jwt_secrets`. Criterion then measures a full check of
//! one token against the whole list (per algorithm and token size), the raw
//! block compressions it is made of, and `Tokens::judge` on the paths a
//! real API takes most (an issued token, a cached answer).

use apisensor::identity::jwt_secrets::{self, wordlist, PreparedToken, Wordlist};
use apisensor::identity::tokens::{TokenSettings, Tokens};
use apisensor::identity::SecretHasher;
use apisensor::jwt::{sign_hmac, Alg, Jwt};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;

/// A token the size of a typical access token (~190 bytes of signing input).
fn token(alg: Alg, padding: usize, secret: &[u8]) -> Jwt {
    let claims = json!({
        "sub": "8f14e45f-ceea-467f-a0e6-1b1a2b3c4d5e",
        "email": "alice@example.com",
        "iat": 1_700_000_000u64,
        "exp": 1_700_000_900u64,
        "scope": "read write",
        "pad": "x".repeat(padding),
    });
    let header = json!({"alg": alg.as_str(), "typ": "JWT"});
    Jwt::decode(&sign_hmac(alg, &header, &claims, secret)).unwrap()
}

fn one_shot() {
    let started = Instant::now();
    let list = Wordlist::load();
    let load = started.elapsed();
    let (lines, duplicates) = list.upstream_lines();
    eprintln!(
        "wordlist: {} secrets ({lines} lines, {duplicates} repeats), embedded gzip {} bytes, \
         decompress+index {:.1} ms, holds {} bytes",
        list.len(),
        include_bytes!("../data/jwt-secrets/jwt.secrets.list.gz").len(),
        load.as_secs_f64() * 1e3,
        list.memory_bytes(),
    );
    let _ = wordlist();
    let before = jwt_secrets::memory_bytes();
    let prepared = PreparedToken::new(&token(Alg::Hs256, 0, b"strong-4f9c1e-not-listed")).unwrap();
    let started = Instant::now();
    assert!(prepared.find().is_none());
    let first = started.elapsed();
    let started = Instant::now();
    assert!(prepared.find().is_none());
    let second = started.elapsed();
    eprintln!(
        "HS256 table: built in {:.1} ms (first check {:.1} ms, next {:.1} ms), holds {} bytes",
        (first.saturating_sub(second)).as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        second.as_secs_f64() * 1e3,
        jwt_secrets::memory_bytes() - before,
    );
    let list = jwt_secrets::memory_bytes();
    eprintln!("wordlist and HS256 table together: {list} bytes");
}

fn bench_full_checks(c: &mut Criterion) {
    one_shot();
    let secrets = wordlist().len() as u64;
    let mut group = c.benchmark_group("jwt_secrets_full_check");
    group.sample_size(10);
    for (name, alg, padding) in [
        ("hs256_190B", Alg::Hs256, 0),
        ("hs256_1KB", Alg::Hs256, 830),
        ("hs384_190B", Alg::Hs384, 0),
        ("hs512_190B", Alg::Hs512, 0),
    ] {
        let jwt = token(alg, padding, b"strong-4f9c1e-not-listed");
        let prepared = PreparedToken::new(&jwt).unwrap();
        eprintln!(
            "{name}: signing input {} bytes, {} SHA-256 block units per secret, {} per check",
            jwt.signing_input().len(),
            prepared.cost_per_secret(),
            prepared.cost_of_full_check(),
        );
        // Elements = secrets tried: criterion reports secrets per second.
        group.throughput(Throughput::Elements(secrets));
        group.bench_function(name, |b| b.iter(|| black_box(prepared.find())));
    }
    group.finish();
}

fn bench_compressions(c: &mut Criterion) {
    use sha2::block_api::{compress256, compress512};
    let mut group = c.benchmark_group("sha_block");
    let blocks64 = [[7u8; 64]; 16];
    let blocks128 = [[7u8; 128]; 16];
    group.throughput(Throughput::Elements(16));
    group.bench_function("sha256_x16", |b| {
        b.iter(|| {
            let mut state = [1u32; 8];
            compress256(&mut state, black_box(&blocks64));
            state
        })
    });
    group.bench_function("sha512_x16", |b| {
        b.iter(|| {
            let mut state = [1u64; 8];
            compress512(&mut state, black_box(&blocks128));
            state
        })
    });
    group.finish();
}

fn bench_judge(c: &mut Criterion) {
    one_shot_learning();
    let hasher = SecretHasher::default();
    let secret = b"strong-4f9c1e-not-listed";
    let mut tokens = Tokens::new(hasher, TokenSettings::default());
    let issued: Vec<Jwt> = (0..64)
        .map(|i| {
            let claims = json!({"sub": format!("user-{i}"), "iat": 1_700_000_000u64 + i,
                "exp": 1_700_000_900u64 + i, "email": "a@example.com"});
            let header = json!({"alg": "HS256", "typ": "JWT"});
            Jwt::decode(&sign_hmac(Alg::Hs256, &header, &claims, secret)).unwrap()
        })
        .collect();
    for (i, jwt) in issued.iter().enumerate() {
        tokens.learn_issued("api.example.test", jwt, None, 1_700_000_000 + i as u64);
    }
    let not_issued = token(Alg::Hs256, 0, secret);
    // The first judgement pays the full check; later ones hit the cache.
    tokens.judge("api.example.test", &not_issued, 1_700_000_100);
    let mut group = c.benchmark_group("tokens_judge");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("issued", |b| {
        b.iter(|| {
            i = (i + 1) % issued.len();
            black_box(tokens.judge("api.example.test", &issued[i], 1_700_000_100))
        })
    });
    group.bench_function("not_issued_cached", |b| {
        b.iter(|| black_box(tokens.judge("api.example.test", &not_issued, 1_700_000_100)))
    });
    group.finish();
    eprintln!("counters after the judge bench: {:?}", tokens.counters());
}

/// One issuer handing out 100,000 distinct tokens: the time to learn each
/// (digests, profile, the weak-secret verdict of its signing configuration)
/// and the memory the profile and the issued-token memory then hold.
fn one_shot_learning() {
    let mut tokens = Tokens::new(SecretHasher::default(), TokenSettings::default());
    let secret = b"strong-4f9c1e-not-listed";
    let issued: Vec<Jwt> = (0..100_000u64)
        .map(|i| {
            let claims = json!({"sub": format!("user-{i}"), "iat": 1_700_000_000u64 + i,
                "exp": 1_700_000_900u64 + i, "email": "a@example.com"});
            let header = json!({"alg": "HS256", "typ": "JWT"});
            Jwt::decode(&sign_hmac(Alg::Hs256, &header, &claims, secret)).unwrap()
        })
        .collect();
    // The first token pays the configuration's full check: not timed here.
    tokens.learn_issued("api.example.test", &issued[0], None, 1_700_000_000);
    let started = Instant::now();
    for (i, jwt) in issued.iter().enumerate().skip(1) {
        tokens.learn_issued("api.example.test", jwt, None, 1_700_000_000 + i as u64);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "learning 99,999 issued tokens: {:.0} ns each; Tokens then holds {} bytes ({:?})",
        elapsed.as_secs_f64() * 1e9 / 99_999.0,
        tokens.memory_bytes(),
        tokens.counters(),
    );
}

criterion_group!(benches, bench_full_checks, bench_compressions, bench_judge);
criterion_main!(benches);

//! Small, bounded summaries the baselines are built from: a quantile sketch
//! (DDSketch, relative-error, bounded bins), a HyperLogLog for distinct
//! counts, and a population histogram of per-actor counts.

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};
use std::collections::BTreeMap;

/// Relative error of quantile estimates (2%): plenty for "far above normal".
const QUANTILE_ALPHA: f64 = 0.02;
/// Bins per sketch at most: 1 byte .. 1 TB at 2% needs about 700.
const QUANTILE_MAX_BINS: u32 = 1024;

/// Quantiles of a non-negative measure (bytes, milliseconds, counts).
#[derive(Clone, Serialize, Deserialize)]
pub struct Quantiles(DDSketch);

impl Default for Quantiles {
    fn default() -> Self {
        Quantiles(DDSketch::new(Config::new(
            QUANTILE_ALPHA,
            QUANTILE_MAX_BINS,
            1e-3,
        )))
    }
}

impl std::fmt::Debug for Quantiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Quantiles(n={}, p50={:?}, p99={:?})",
            self.count(),
            self.quantile(0.5),
            self.quantile(0.99)
        )
    }
}

impl Quantiles {
    pub fn add(&mut self, value: f64) {
        if value.is_finite() && value >= 0.0 {
            self.0.add(value);
        }
    }

    pub fn count(&self) -> u64 {
        self.0.count() as u64
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.0.quantile(q.clamp(0.0, 1.0)).ok().flatten()
    }
}

/// Registers of the HyperLogLog: 2^6 = 64 bytes, about 13% standard error,
/// which is enough to tell one id from hundreds.
const HLL_BITS: u32 = 6;
const HLL_REGISTERS: usize = 1 << HLL_BITS;

/// Distinct values seen, estimated in 64 bytes.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Distinct {
    #[serde(with = "serde_bytes_array")]
    registers: [u8; HLL_REGISTERS],
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct {
            registers: [0; HLL_REGISTERS],
        }
    }
}

impl std::fmt::Debug for Distinct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Distinct(~{})", self.estimate())
    }
}

impl Distinct {
    /// Adds a value; true when the estimate may have changed.
    pub fn insert(&mut self, value: &[u8]) -> bool {
        let hash = u64::from_le_bytes(
            blake3::hash(value).as_bytes()[..8]
                .try_into()
                .unwrap_or([0; 8]),
        );
        let index = (hash >> (64 - HLL_BITS)) as usize;
        let rank = ((hash << HLL_BITS) | (1 << (HLL_BITS - 1))).leading_zeros() as u8 + 1;
        match self.registers.get_mut(index) {
            Some(r) if *r < rank => {
                *r = rank;
                true
            }
            _ => false,
        }
    }

    pub fn estimate(&self) -> u64 {
        let m = HLL_REGISTERS as f64;
        let alpha = 0.709; // for m = 64
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let raw = alpha * m * m / sum;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            // Linear counting is exact-ish for small sets.
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as u64
    }
}

mod serde_bytes_array {
    use super::HLL_REGISTERS;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; HLL_REGISTERS], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; HLL_REGISTERS], D::Error> {
        let bytes: Vec<u8> = serde_bytes_compat(d)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("HyperLogLog registers of the wrong size"))
    }

    fn serde_bytes_compat<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

/// How a per-actor count is spread over the population of actors: the
/// histogram of current values, updated as each actor's value moves, so a
/// percentile over all actors is exact and cheap.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Population {
    counts: BTreeMap<u64, u64>,
    actors: u64,
}

impl Population {
    /// An actor's value changed from `old` (None: new actor) to `new`.
    pub fn moved(&mut self, old: Option<u64>, new: u64) {
        match old {
            Some(old) => {
                if let Some(n) = self.counts.get_mut(&old) {
                    *n -= 1;
                    if *n == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
            None => self.actors += 1,
        }
        *self.counts.entry(new).or_default() += 1;
    }

    /// An actor left (expired).
    pub fn left(&mut self, value: u64) {
        if let Some(n) = self.counts.get_mut(&value) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&value);
            }
            self.actors = self.actors.saturating_sub(1);
        }
    }

    pub fn actors(&self) -> u64 {
        self.actors
    }

    /// The value at quantile `q` over actors, leaving out one actor's own
    /// `exclude` value (so an outlier does not raise its own bar).
    pub fn quantile_excluding(&self, q: f64, exclude: Option<u64>) -> Option<u64> {
        let total = self.actors.saturating_sub(u64::from(exclude.is_some()));
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * (total - 1) as f64).round()) as u64;
        let mut seen = 0u64;
        let mut skipped = false;
        for (&value, &n) in &self.counts {
            let mut n = n;
            if !skipped && Some(value) == exclude {
                n = n.saturating_sub(1);
                skipped = true;
            }
            seen += n;
            if seen > rank {
                return Some(value);
            }
        }
        self.counts.keys().next_back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut q = Quantiles::default();
        for v in 1..=10_000 {
            q.add(f64::from(v));
        }
        let p99 = q.quantile(0.99).unwrap();
        assert!((p99 - 9_900.0).abs() / 9_900.0 < 0.03, "{p99}");
        q.add(f64::NAN);
        q.add(-1.0);
        assert_eq!(q.count(), 10_000);
    }

    #[test]
    fn distinct_counts_small_and_large_sets() {
        let mut d = Distinct::default();
        for i in 0..3u32 {
            d.insert(&i.to_le_bytes());
            d.insert(&i.to_le_bytes());
        }
        assert_eq!(d.estimate(), 3);
        for i in 0..1000u32 {
            d.insert(format!("id-{i}").as_bytes());
        }
        let e = d.estimate() as f64;
        assert!((e - 1003.0).abs() / 1003.0 < 0.35, "{e}");
        let bytes = rmp_serde::to_vec_named(&d).unwrap();
        let back: Distinct = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn population_quantile_excludes_the_actor_itself() {
        let mut p = Population::default();
        for _ in 0..99 {
            p.moved(None, 2);
        }
        p.moved(None, 500);
        assert_eq!(p.quantile_excluding(0.99, Some(500)), Some(2));
        assert_eq!(p.quantile_excluding(1.0, None), Some(500));
        p.moved(Some(2), 3);
        assert_eq!(p.actors(), 100);
        p.left(500);
        assert_eq!(p.quantile_excluding(1.0, None), Some(3));
    }
}

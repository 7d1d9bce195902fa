//! Quality and diversity of a corpus's passages in the reference model's embedding
//! space: precision and recall in the k-nearest-neighbour manifold sense (Kynkäänniemi
//! et al. 2019), density and coverage (Naeem et al. 2020), as Alemohammad et al. (ICLR
//! 2024) separate a loop's loss of quality from its loss of diversity.
//!
//! Definitions (one place, as for every other measure):
//! - A *passage* is a full window of those `lmloop eval` reads: C = context-length
//!   targets of a document, the first C after the start token, then every C on. A
//!   document's shorter last window, and a document shorter than C, is no passage: its
//!   mean embedding sits apart from full windows' (its few positions average less), and
//!   the share of such windows grows as a loop's documents shorten, so counting them
//!   would move recall with document length rather than diversity. Mean document
//!   length and the truncation share report length. A passage's *embedding* is the
//!   mean, over its C positions, of the reference model's last hidden state after the
//!   final norm (the vector its output projection reads), computed in the same forward
//!   pass that scores the documents' perplexity. A corpus with no more than [`K`]
//!   passages has no measures (NaN).
//! - The real passages are those of the test split; a corpus is compared on `m` of its
//!   passages against `m` real ones, `m` = min([`SAMPLE_CAP`], real passages, the
//!   corpus's passages), each set a seeded draw without replacement.
//! - With r_k(x) the Euclidean distance from x to its k-th nearest other point of its
//!   own set (k = [`K`]):
//!   - precision: the share of the corpus's passages inside some real passage's ball
//!     (distance to it ≤ that real passage's r_k);
//!   - recall: the share of real passages inside some corpus passage's ball (radii among
//!     the corpus's passages);
//!   - density: the number of real balls each corpus passage lies in, over k, averaged
//!     (1 on average for a corpus drawn like the real data; above 1 where a corpus
//!     crowds the dense regions);
//!   - coverage: the share of real passages whose nearest corpus passage lies inside
//!     their own ball.
//! - The noise floor: the same four measures for [`FLOOR_DRAWS`] draws of `m` passages
//!   of real documents outside R (the noise floor's source), against the same real
//!   passages: their mean, and their spread as two standard deviations, corrected for
//!   the draws sharing one pool (finite-population factor).

/// Nearest neighbours that set a point's radius.
pub const K: usize = 5;
/// At most this many passages of a corpus, and as many real ones, are compared.
pub const SAMPLE_CAP: usize = 1024;
/// Draws of unseen real passages the noise floor's spread is estimated from.
pub const FLOOR_DRAWS: usize = 20;

/// Row-major embeddings of equal dimension.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embeddings {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    pub fn new(dim: usize) -> Self {
        Self { dim, data: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    pub fn push(&mut self, row: &[f32]) {
        assert_eq!(row.len(), self.dim, "embedding of another dimension");
        self.data.extend_from_slice(row);
    }

    /// The rows at `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Self {
        let mut out = Self::new(self.dim);
        for &i in rows {
            out.push(self.row(i));
        }
        out
    }

    /// Little-endian f32 rows after a u32 dimension: what `scores/*.emb` hold.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.data.len() * 4);
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        for x in &self.data {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let dim = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let body = &bytes[4..];
        if dim == 0 || !body.len().is_multiple_of(4 * dim) {
            return None;
        }
        let data = body.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        Some(Self { dim, data })
    }
}

/// Precision, recall, density and coverage of one set of passages against the real ones.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifold {
    pub precision: f64,
    pub recall: f64,
    pub density: f64,
    pub coverage: f64,
    /// Passages compared on each side.
    pub passages: usize,
}

impl Manifold {
    /// Every measure NaN: too few passages to compare.
    pub fn none() -> Self {
        Self { precision: f64::NAN, recall: f64::NAN, density: f64::NAN, coverage: f64::NAN, passages: 0 }
    }

    pub fn values(&self) -> [f64; 4] {
        [self.precision, self.recall, self.density, self.coverage]
    }
}

/// The names of [`Manifold::values`], as `generations.csv` spells them.
pub const MEASURES: [&str; 4] = ["precision", "recall", "density", "coverage"];

fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum()
}

/// Squared distances between every row of `a` and every row of `b` (|a| × |b|).
fn distances(a: &Embeddings, b: &Embeddings) -> Vec<f64> {
    let mut out = vec![0.0; a.len() * b.len()];
    for i in 0..a.len() {
        for j in 0..b.len() {
            out[i * b.len() + j] = squared_distance(a.row(i), b.row(j));
        }
    }
    out
}

/// Squared distance from every row to its k-th nearest other row.
fn radii(x: &Embeddings, k: usize) -> Vec<f64> {
    let n = x.len();
    let d = distances(x, x);
    (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| d[i * n + j]).collect();
            let (_, kth, _) = row.select_nth_unstable_by(k - 1, f64::total_cmp);
            *kth
        })
        .collect()
}

/// The four measures of `fake` against `real` with `k` neighbours; every measure NaN
/// when either set has no more than `k` points.
pub fn manifold(real: &Embeddings, fake: &Embeddings, k: usize) -> Manifold {
    let (nr, nf) = (real.len(), fake.len());
    if k == 0 || nr <= k || nf <= k {
        return Manifold::none();
    }
    let (real_r, fake_r) = (radii(real, k), radii(fake, k));
    let d = distances(fake, real); // nf × nr
    let inside = |f: usize, r: usize| d[f * nr + r] <= real_r[r];
    let precision = (0..nf).filter(|&f| (0..nr).any(|r| inside(f, r))).count() as f64 / nf as f64;
    let recall = (0..nr).filter(|&r| (0..nf).any(|f| d[f * nr + r] <= fake_r[f])).count() as f64 / nr as f64;
    let balls: usize = (0..nf).map(|f| (0..nr).filter(|&r| inside(f, r)).count()).sum();
    let density = balls as f64 / (k * nf) as f64;
    let coverage = (0..nr)
        .filter(|&r| {
            let nearest = (0..nf).map(|f| d[f * nr + r]).fold(f64::INFINITY, f64::min);
            nearest <= real_r[r]
        })
        .count() as f64
        / nr as f64;
    Manifold { precision, recall, density, coverage, passages: nf.min(nr) }
}

/// `m` of `n` indices drawn without replacement (seeded), in increasing order.
pub fn draw(n: usize, m: usize, seed: u64) -> Vec<usize> {
    use rand::seq::index::sample;
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut picked = sample(&mut rng, n, m.min(n)).into_vec();
    picked.sort_unstable();
    picked
}

/// How many passages a corpus of `corpus` passages is compared on against `real`.
pub fn sample_size(real: usize, corpus: usize) -> usize {
    SAMPLE_CAP.min(real).min(corpus)
}

/// `corpus` against `real`, each a seeded draw of [`sample_size`] passages.
pub fn compare(real: &Embeddings, corpus: &Embeddings, seed: u64) -> Manifold {
    let m = sample_size(real.len(), corpus.len());
    let r = real.select(&draw(real.len(), m, seed));
    let c = corpus.select(&draw(corpus.len(), m, seed ^ 0x9e37_79b9_7f4a_7c15));
    manifold(&r, &c, K)
}

/// The noise floor of the four measures: mean and spread over draws of unseen real
/// passages against the same real passages.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Floor {
    pub draws: Vec<Manifold>,
    /// Passages in the pool the draws come from.
    pub pool: usize,
}

impl Floor {
    /// [`FLOOR_DRAWS`] draws from `pool` (unseen real passages), each compared like a
    /// corpus would be against `real`; `None` when the pool is empty.
    pub fn measure(real: &Embeddings, pool: &Embeddings, seed: u64) -> Option<Self> {
        if pool.is_empty() {
            return None;
        }
        let draws = (0..FLOOR_DRAWS as u64)
            .map(|i| compare(real, pool, crate::mix::splitmix64(seed.wrapping_add(i))))
            .collect();
        Some(Self { draws, pool: pool.len() })
    }

    /// Mean of measure `i` ([`MEASURES`]) over the draws.
    pub fn mean(&self, i: usize) -> f64 {
        let v: Vec<f64> = self.draws.iter().map(|d| d.values()[i]).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }

    /// Two standard deviations of measure `i` over the draws, scaled up by the
    /// finite-population factor 1/√(1 − m/pool): draws of m passages from one pool
    /// share passages, so they vary less than independent real corpora would.
    pub fn spread(&self, i: usize) -> f64 {
        let n = self.draws.len();
        if n < 2 {
            return f64::NAN;
        }
        let mean = self.mean(i);
        let var = self.draws.iter().map(|d| (d.values()[i] - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let m = self.draws[0].passages as f64;
        let shared = (m / self.pool as f64).min(0.9);
        2.0 * (var / (1.0 - shared)).sqrt()
    }
}

/// One run on the precision–recall plane: its label, its (generation, recall,
/// precision) points (`crate::analysis::figures::plane_points`) and its noise floor.
pub type PlanePath = (String, Vec<(u32, f64, f64)>, Option<Floor>);

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(n: usize, dim: usize, centre: f32, seed: u64) -> Embeddings {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut e = Embeddings::new(dim);
        for _ in 0..n {
            let row: Vec<f32> = (0..dim).map(|_| centre + rng.gen_range(-1.0f32..1.0)).collect();
            e.push(&row);
        }
        e
    }

    #[test]
    fn a_second_draw_of_the_same_cloud_scores_near_one() {
        let real = cloud(400, 8, 0.0, 1);
        let m = manifold(&real, &cloud(400, 8, 0.0, 2), K);
        assert!(m.precision > 0.9 && m.recall > 0.9, "{m:?}");
        assert!((m.density - 1.0).abs() < 0.25 && m.coverage > 0.9, "{m:?}");
    }

    #[test]
    fn a_repeated_point_keeps_precision_and_loses_recall_and_a_far_cloud_loses_precision() {
        let real = cloud(300, 8, 0.0, 1);
        let mut one = Embeddings::new(8);
        for _ in 0..300 {
            one.push(real.row(7));
        }
        let m = manifold(&real, &one, K);
        assert_eq!(m.precision, 1.0);
        assert!(m.recall < 0.02, "{m:?}");
        assert!(m.coverage < 0.05, "{m:?}");
        let far = manifold(&real, &cloud(300, 8, 5.0, 3), K);
        assert_eq!(far.precision, 0.0);
        assert_eq!(far.density, 0.0);
    }

    #[test]
    fn too_few_points_give_nan_and_embeddings_round_trip() {
        let real = cloud(5, 4, 0.0, 1);
        assert!(manifold(&real, &cloud(50, 4, 0.0, 2), K).precision.is_nan());
        let e = cloud(3, 4, 0.0, 9);
        assert_eq!(Embeddings::from_bytes(&e.to_bytes()), Some(e));
        assert_eq!(Embeddings::from_bytes(&[1, 0, 0, 0, 1]), None);
    }
}

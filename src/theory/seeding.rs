//! Per-trial random streams.
//!
//! Trial t of a run with seed s uses ChaCha8 keyed by s on stream t: streams
//! are independent by construction, and a trial's numbers do not depend on
//! which thread runs it or in what order, so results are identical for any
//! thread count.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub fn trial_rng(seed: u64, trial: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(trial as u64);
    rng
}

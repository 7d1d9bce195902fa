//! Walker/Vose alias table: O(m) to build over m weights, O(1) per draw.

/// 2^64 as a float: acceptance thresholds are fractions of it.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

#[derive(Clone, Debug, Default)]
pub struct AliasTable {
    /// Per cell: keep the cell when the coin is below this (acceptance
    /// probability × 2^64)…
    threshold: Vec<u64>,
    /// …and otherwise take this category.
    alias: Vec<u32>,
    // Scratch of the construction, kept to avoid reallocating.
    scaled: Vec<f64>,
    work: Vec<u32>,
}

impl AliasTable {
    pub fn len(&self) -> usize {
        self.threshold.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threshold.is_empty()
    }

    /// Rebuilds the table for `weights` (finite, ≥ 0, positive total).
    ///
    /// Vose's construction: every cell whose scaled weight is below 1 is
    /// topped up from a cell above 1, which joins the cells below 1 once it
    /// drops under. Written without data-dependent branches (whether a weight
    /// is above 1 is a coin flip for the branch predictor): one work array
    /// holds the cells below 1 as a stack at its front and the others behind.
    pub fn rebuild(&mut self, weights: &[f64]) {
        let m = weights.len();
        let total: f64 = weights.iter().sum();
        let scale = m as f64 / total;
        self.scaled.clear();
        self.scaled.extend(weights.iter().map(|w| w * scale));
        self.alias.clear();
        self.alias.extend(0..m as u32);
        self.work.clear();
        self.work.resize(m, 0);
        let (scaled, aliases, work) = (&mut self.scaled[..], &mut self.alias[..], &mut self.work[..]);

        // Partition: cells below 1 fill from the front, the others from the
        // back. Writing the cell at both ends and advancing only one of them
        // is safe because front < back until every cell is placed.
        let (mut front, mut back) = (0usize, m);
        for (cell, &value) in scaled.iter().enumerate() {
            let below = (value < 1.0) as usize;
            work[front] = cell as u32;
            work[back - 1] = cell as u32;
            front += below;
            back -= 1 - below;
        }

        // Pair the top "below" cell with the current "above" cell.
        let (mut below_count, mut above) = (front, front);
        while below_count > 0 && above < m {
            below_count -= 1;
            let under = work[below_count] as usize;
            let over = work[above];
            aliases[under] = over;
            let remaining = scaled[over as usize] + scaled[under] - 1.0;
            scaled[over as usize] = remaining;
            // If `over` dropped below 1 it moves onto the stack (into the slot
            // just freed) and the next "above" cell becomes current.
            let dropped = (remaining < 1.0) as usize;
            work[below_count] = over;
            below_count += dropped;
            above += dropped;
        }
        // Whatever is left differs from 1 only by rounding: always accept.
        for &cell in work[..below_count].iter().chain(&work[above..]) {
            scaled[cell as usize] = 1.0;
        }
        // A float at or above 2^64 saturates to u64::MAX: "always accept" up
        // to a 2^-64 chance.
        self.threshold.clear();
        self.threshold.extend(self.scaled.iter().map(|&p| (p * TWO_POW_64) as u64));
    }

    /// One draw from 64 uniform random bits: r·m / 2^64 split at the binary
    /// point, the integer part a uniform cell and the fraction an independent
    /// uniform coin (up to m/2^64 of bias), in integer arithmetic. The select
    /// is branch-free because the coin is a 50/50 guess for the branch
    /// predictor, and a mispredict costs more than the draw.
    #[inline(always)]
    pub fn sample(&self, random: u64) -> usize {
        let product = random as u128 * self.threshold.len() as u128;
        let cell = (product >> 64) as usize;
        let coin = product as u64;
        let alias = self.alias[cell] as usize;
        let keep = ((coin < self.threshold[cell]) as usize).wrapping_neg();
        alias ^ ((cell ^ alias) & keep)
    }
}

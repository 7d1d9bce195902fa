//! Ordinary least squares of y on x, shared by the Zipf slope and the vanish fit.

/// y ≈ slope·x + intercept, fitted to `n` points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearFit {
    pub slope: f64,
    pub intercept: f64,
    /// Coefficient of determination; NaN when every y is equal (nothing to explain).
    pub r_squared: f64,
    pub n: usize,
}

impl LinearFit {
    /// The least-squares line, or `None` with fewer than two points or when every x
    /// is equal (the slope is then undefined). Non-finite points are an error of the
    /// caller's and are not filtered here.
    pub fn fit(points: &[(f64, f64)]) -> Option<LinearFit> {
        let n = points.len();
        if n < 2 {
            return None;
        }
        let (mean_x, mean_y) = {
            let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), &(x, y)| (sx + x, sy + y));
            (sx / n as f64, sy / n as f64)
        };
        // Centred sums: stable even when x is large (counts) or nearly constant.
        let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
        for &(x, y) in points {
            let (dx, dy) = (x - mean_x, y - mean_y);
            sxx += dx * dx;
            sxy += dx * dy;
            syy += dy * dy;
        }
        if sxx <= 0.0 {
            return None;
        }
        let slope = sxy / sxx;
        let r_squared = if syy > 0.0 { (sxy * sxy / (sxx * syy)).min(1.0) } else { f64::NAN };
        Some(LinearFit { slope, intercept: mean_y - slope * mean_x, r_squared, n })
    }
}

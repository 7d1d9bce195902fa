//! Progress bars, one style per kind of long work, all on stderr (indicatif draws
//! nothing when stderr is not a terminal).
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Steps of one training run or tokens of one corpus; hidden when `visible` is false.
pub fn work(len: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix}{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}")
            .expect("a valid progress template"),
    );
    bar
}

/// Runs of a sweep, `done` of `total` already finished.
pub fn runs(total: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:24}] {pos}/{len} runs finished · {msg}")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    bar.set_position(done);
    bar
}

/// Trials of a theory simulation, labelled with the simulator's name.
pub fn trials(trials: usize, label: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(trials as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:40} {pos}/{len} trials [{elapsed_precise}, eta {eta}]")
            .expect("a valid progress template"),
    );
    bar.set_prefix(label);
    bar
}

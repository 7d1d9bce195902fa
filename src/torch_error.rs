//! libtorch failures in words a user can act on.
//!
//! tch reports a libtorch exception either as an error (`TchError::Torch`, from its
//! fallible `f_*` calls) or as a panic (its other calls unwrap). [`guard`] turns both
//! into one error that names the step that failed; out-of-memory failures (CPU or CUDA)
//! also name the settings to lower. Everything else keeps libtorch's first line, without
//! the C++ stack that follows it.
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Open [`guard`]s in this process: while one is open, the panic hook stays quiet
/// because the guard reports the failure itself.
static OPEN_GUARDS: AtomicUsize = AtomicUsize::new(0);

/// The first line libtorch wrote, without tch's wrapping (`Torch("…")`, the
/// `unwrap` preamble) or the C++ stack after it.
pub fn first_line(message: &str) -> String {
    let mut m = message;
    for prefix in ["called `Result::unwrap()` on an `Err` value: ", "Internal torch error: "] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest;
        }
    }
    if let Some(rest) = m.strip_prefix("Torch(\"") {
        m = rest;
    }
    // tch's Debug output escapes newlines as `\n`.
    let end = [m.find('\n'), m.find("\\n")].into_iter().flatten().min().unwrap_or(m.len());
    m[..end].trim_end_matches("\")").trim().to_string()
}

/// True when a libtorch message reports an exhausted allocator (CPU or CUDA).
pub fn is_out_of_memory(message: &str) -> bool {
    let m = message.to_lowercase();
    ["out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory"]
        .iter()
        .any(|p| m.contains(p))
}

/// The sentence for a libtorch failure `message` while doing `what`; `lower` names the
/// settings that set this step's memory use.
pub fn explain(message: &str, what: &str, lower: &str) -> String {
    let first = first_line(message);
    if is_out_of_memory(message) {
        format!("out of memory while {what}; lower {lower} (libtorch: {first})")
    } else {
        format!("libtorch failed while {what}: {first}")
    }
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// Runs `f`, one step of the work (`what`, e.g. "training generation 3"). A libtorch
/// failure inside it, returned or panicked, becomes [`explain`]'s sentence; any other
/// error gets `what` as context, as `with_context` would give it.
pub fn guard<T>(what: &str, lower: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    OPEN_GUARDS.fetch_add(1, Ordering::SeqCst);
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    OPEN_GUARDS.fetch_sub(1, Ordering::SeqCst);
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            let torch = err.chain().find_map(|e| match e.downcast_ref::<tch::TchError>() {
                Some(tch::TchError::Torch(m)) => Some(m.clone()),
                _ => None,
            });
            match torch {
                Some(m) => Err(anyhow::anyhow!(explain(&m, what, lower))),
                None => Err(err.context(what.to_string())),
            }
        }
        Err(payload) => {
            let text = payload_text(payload.as_ref());
            if text.contains("Torch(") || text.contains("Internal torch error") || is_out_of_memory(&text) {
                Err(anyhow::anyhow!(explain(&text, what, lower)))
            } else {
                Err(anyhow::anyhow!("internal error while {what} ({}); please report it", first_line(&text)))
            }
        }
    }
}

/// The process's panic hook: one line instead of a backtrace; quiet inside a [`guard`],
/// which reports the failure itself.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if OPEN_GUARDS.load(Ordering::SeqCst) > 0 {
            return;
        }
        let text = payload_text(info.payload());
        if is_out_of_memory(&text) {
            eprintln!(
                "error: out of memory; lower the batch size, the context (model.block_size) or the model's width (libtorch: {})",
                first_line(&text)
            );
        } else {
            eprintln!("error: internal error ({}); please report it", first_line(&text));
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_and_cpu_exhaustion_name_the_settings() {
        let cuda = "called `Result::unwrap()` on an `Err` value: Torch(\"CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB\\nException raised from malloc at /pytorch/c10/cuda/CUDACachingAllocator.cpp:1\")";
        let m = explain(cuda, "sampling from generation 2", "sample.batch_size (now 512)");
        assert_eq!(
            m,
            "out of memory while sampling from generation 2; lower sample.batch_size (now 512) (libtorch: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.10 GiB)"
        );
        let cpu = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8796093022208 bytes. Error code 12 (Cannot allocate memory)\nException raised from …";
        assert!(explain(cpu, "training", "train.batch_size")
            .starts_with("out of memory while training; lower train.batch_size"));
        let other = "Internal torch error: shape '[2, 3]' is invalid for input of size 7\nException raised from …";
        assert_eq!(
            explain(other, "training", "x"),
            "libtorch failed while training: shape '[2, 3]' is invalid for input of size 7"
        );
    }

    #[test]
    fn a_real_allocation_failure_is_caught_and_explained() {
        let err = guard("making a huge tensor", "the size", || {
            let t = tch::Tensor::zeros([1i64 << 42], (tch::Kind::Float, tch::Device::Cpu));
            Ok(t.numel())
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("out of memory while making a huge tensor; lower the size (libtorch: "), "{err}");
        assert!(!err.contains("Exception raised"), "{err}");
        let plain = guard("reading", "-", || -> anyhow::Result<()> { anyhow::bail!("no such file") }).unwrap_err();
        assert_eq!(format!("{plain:#}"), "reading: no such file");
    }
}

//! Mixed precision for training (`train.precision = "bf16"`), as autocast does it.
//!
//! While [`autocast`] runs a closure, matrix products ([`linear`]) cast their inputs to
//! the reduced kind, and attention therefore runs on reduced-precision queries, keys
//! and values. Everything else stays float32: the weights (the casts are part of the
//! autograd graph, so gradients reach the float32 weights as float32), the residual
//! stream (float32 + bfloat16 promotes to float32), the norms, the softmax of the loss
//! and the optimizer. Outside a closure, and so in evaluation and sampling, every
//! product is float32. libtorch's own autocast is not used because tch can switch it
//! on only with float16 as its CUDA kind and not at all on the CPU.
use std::cell::Cell;
use tch::{Kind, Tensor};

thread_local! {
    static COMPUTE: Cell<Option<Kind>> = const { Cell::new(None) };
}

/// Runs `f` with matrix products in `kind` (`None`: float32), restoring the previous
/// setting afterwards, also when `f` panics.
pub fn autocast<T>(kind: Option<Kind>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Kind>);
    impl Drop for Restore {
        fn drop(&mut self) {
            COMPUTE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(COMPUTE.with(|c| c.replace(kind)));
    f()
}

/// The reduced kind matrix products run in now, if any.
pub fn compute_kind() -> Option<Kind> {
    COMPUTE.with(|c| c.get())
}

/// `x · wᵀ + b` in the current compute kind.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
    match compute_kind() {
        Some(k) => x.to_kind(k).linear(&w.to_kind(k), b.map(|b| b.to_kind(k))),
        None => x.linear(w, b),
    }
}

/// The output projection onto the vocabulary, always returning float32 logits (the
/// loss and the softmax need them).
pub fn logits(x: &Tensor, head: &Tensor) -> Tensor {
    match compute_kind() {
        Some(k) => x.to_kind(k).linear(&head.to_kind(k), None::<Tensor>).to_kind(Kind::Float),
        None => x.linear(head, None::<Tensor>),
    }
}

/// Whether libtorch can run a reduced-kind matrix product and attention on `device`:
/// `Err` carries libtorch's reason.
pub fn check(kind: Kind, device: tch::Device) -> Result<(), String> {
    let probe = || -> Result<(), tch::TchError> {
        let a = Tensor::f_ones([4, 8], (kind, device))?;
        let _ = a.f_linear(&a, None::<Tensor>)?;
        let q = Tensor::f_ones([1, 1, 4, 8], (kind, device))?;
        let _ = Tensor::f_scaled_dot_product_attention(&q, &q, &q, None::<Tensor>, 0.0, true, None, false)?;
        Ok(())
    };
    probe().map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())
}

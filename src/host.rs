//! Borrowed views of CPU tensors' memory, for the few hot loops that run in Rust
//! (the decoding step's attention, the sampler's draw) without copying.
use tch::{Device, Kind, Tensor};

/// Whether `t` can be viewed as a slice of f32: contiguous f32 on the CPU.
pub fn viewable(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous()
}

/// The elements of `t` in row-major order.
///
/// # Safety
/// `t` must be [`viewable`], and nothing may write it while the slice lives.
pub unsafe fn slice(t: &Tensor) -> &[f32] {
    debug_assert!(viewable(t));
    std::slice::from_raw_parts(t.data_ptr() as *const f32, t.numel())
}

/// The elements of `t` in row-major order, writable.
///
/// # Safety
/// `t` must be [`viewable`], and nothing else may read or write it while the slice
/// lives (libtorch included: no tensor op on it or on a view of it meanwhile).
#[allow(clippy::mut_from_ref)]
pub unsafe fn slice_mut(t: &Tensor) -> &mut [f32] {
    debug_assert!(viewable(t));
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, t.numel())
}

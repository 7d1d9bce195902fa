//! Device and thread selection (`--device auto|cpu|cuda`, `--threads N`).
use crate::config::DeviceChoice;
use anyhow::{bail, Result};
use tch::{Cuda, Device};

/// The device a choice means here. `auto` picks CUDA when libtorch sees a GPU.
pub fn resolve(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => {
            if !Cuda::is_available() {
                bail!("--device cuda was asked for, but libtorch sees no CUDA device (use --device cpu or auto)");
            }
            Ok(Device::Cuda(0))
        }
    }
}

/// Sets libtorch's intra-op threads; 0 keeps its default (one per core).
pub fn set_threads(threads: usize) {
    if threads > 0 {
        tch::set_num_threads(threads as i32);
    }
}

pub fn describe(device: Device) -> String {
    match device {
        Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

/// Seeds libtorch's generators (CPU and, where present, CUDA).
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
    if Cuda::is_available() {
        Cuda::manual_seed_all(seed);
    }
}

//! AdamW (Loshchilov & Hutter's decoupled weight decay) on plain tensors, so that its
//! state can go into a mid-training snapshot and come back exactly.
//!
//! libtorch's own optimizer keeps its moments out of reach of the C API that tch wraps,
//! so a resumed run would restart them from zero. This one makes the same update,
//! per parameter p with gradient g at step t:
//!
//! ```text
//! p ← p · (1 − lr · wd)                      (decoupled weight decay; wd = 0 for biases, norms)
//! m ← m + (1 − β1)(g − m)                    (first moment)
//! v ← β2 · v + (1 − β2) · g²                 (second moment)
//! p ← p − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε)
//! ```
//!
//! Its state is the two moments of every parameter and every parameter's step count.
use crate::config::TrainConfig;
use crate::model::NO_DECAY_GROUP;
use anyhow::{bail, Result};
use std::collections::HashMap;
use tch::{nn, Kind, Tensor};

/// ε of the update's denominator (torch's default).
pub const EPS: f64 = 1e-8;

struct Param {
    name: String,
    tensor: Tensor,
    /// Where the parameter sits in the flat buffers, and its length.
    offset: i64,
    numel: i64,
}

/// The optimizer's state lives in flat buffers over all parameters (in name order),
/// so one step is a dozen large kernels plus one in-place add per parameter, instead
/// of about ten small kernels per parameter: on a GPU, arithmetic instead of launch
/// overhead (docs/measured.md has the figures).
pub struct AdamW {
    params: Vec<Param>,
    /// First and second moments, (N,) over all parameters.
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// Each element's weight decay (`wd` for matrices, 0 for biases and norms), (N,).
    decay: Tensor,
    step: i64,
    beta1: f64,
    beta2: f64,
    lr: f64,
}

impl AdamW {
    pub fn new(vs: &nn::VarStore, cfg: &TrainConfig) -> Self {
        let vars = vs.variables_.lock().expect("the variable store is not poisoned");
        let group_of: HashMap<usize, usize> =
            vars.trainable_variables.iter().map(|v| (v.tensor.data_ptr() as usize, v.group)).collect();
        let mut named: Vec<(&String, &Tensor)> =
            vars.named_variables.iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        let (mut params, mut decay, mut offset) = (Vec::with_capacity(named.len()), Vec::with_capacity(named.len()), 0);
        for (name, t) in named {
            let group = group_of.get(&(t.data_ptr() as usize)).copied().unwrap_or(0);
            let numel = t.numel() as i64;
            let wd = if group == NO_DECAY_GROUP { 0.0 } else { cfg.weight_decay };
            decay.push(Tensor::full([numel], wd, (Kind::Float, t.device())));
            params.push(Param { name: name.clone(), tensor: t.shallow_clone(), offset, numel });
            offset += numel;
        }
        let device = params.first().map_or(tch::Device::Cpu, |p| p.tensor.device());
        let zeros = || Tensor::zeros([offset], (Kind::Float, device));
        let decay = if decay.is_empty() { zeros() } else { Tensor::cat(&decay, 0) };
        Self {
            params,
            exp_avg: zeros(),
            exp_avg_sq: zeros(),
            decay,
            step: 0,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            lr: cfg.learning_rate,
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.tensor.zero_grad();
        }
    }

    /// One update from the parameters' gradients, after scaling them so that their
    /// global L2 norm is at most `clip` (as `torch.nn.utils.clip_grad_norm_` does;
    /// `clip` = 0 leaves them as they are), without a host round trip. A parameter
    /// without a gradient counts as a zero gradient.
    pub fn step(&mut self, clip: f64) {
        let (beta1, beta2, lr) = (self.beta1, self.beta2, self.lr);
        if self.params.is_empty() {
            return;
        }
        tch::no_grad(|| {
            let flat = |f: &dyn Fn(&Param) -> Tensor| {
                Tensor::cat(&self.params.iter().map(|p| f(p).reshape([-1])).collect::<Vec<_>>(), 0)
            };
            let mut grad = flat(&|p| {
                let g = p.tensor.grad();
                if g.defined() {
                    g
                } else {
                    p.tensor.zeros_like()
                }
            });
            if clip > 0.0 {
                let total = grad.norm();
                let coef = ((total + 1e-6).reciprocal() * clip).clamp_max(1.0).to_kind(Kind::Float);
                let _ = grad.g_mul_(&coef);
            }
            self.step += 1;
            let _ = self.exp_avg.lerp_(&grad, 1.0 - beta1);
            let _ = self.exp_avg_sq.g_mul_scalar_(beta2);
            let _ = self.exp_avg_sq.addcmul_(&grad, &(&grad * (1.0 - beta2)));
            let bias1 = 1.0 - beta1.powi(self.step as i32);
            let bias2 = 1.0 - beta2.powi(self.step as i32);
            let mut denom = self.exp_avg_sq.sqrt();
            let _ = denom.g_div_scalar_(bias2.sqrt());
            let _ = denom.g_add_scalar_(EPS);
            // Decoupled weight decay and the Adam step in one increment per parameter.
            let values = flat(&|p| p.tensor.detach());
            let mut delta = self.exp_avg.g_mul_scalar(-lr / bias1) / denom;
            let _ = delta.g_sub_(&(values * &self.decay * lr));
            for p in &self.params {
                let _ = p.tensor.detach().g_add_(&delta.narrow(0, p.offset, p.numel).view_(p.tensor.size()));
            }
        });
    }

    /// The moments of every parameter (`exp_avg.NAME`, `exp_avg_sq.NAME`, views into
    /// the flat buffers) and every parameter's step count.
    pub fn state(&self) -> (Vec<(String, Tensor)>, BTreeSteps) {
        let mut tensors = Vec::with_capacity(2 * self.params.len());
        let mut steps = BTreeSteps::new();
        for p in &self.params {
            let view = |t: &Tensor| t.narrow(0, p.offset, p.numel).view_(p.tensor.size());
            tensors.push((format!("exp_avg.{}", p.name), view(&self.exp_avg)));
            tensors.push((format!("exp_avg_sq.{}", p.name), view(&self.exp_avg_sq)));
            steps.insert(p.name.clone(), self.step);
        }
        (tensors, steps)
    }

    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, steps: &BTreeSteps) -> Result<()> {
        let mut step = None;
        for p in &self.params {
            for key in [format!("exp_avg.{}", p.name), format!("exp_avg_sq.{}", p.name)] {
                match tensors.get(&key) {
                    None => bail!("the optimizer state has no '{key}'"),
                    Some(t) if t.size() != p.tensor.size() => {
                        bail!(
                            "the optimizer state's '{key}' is {:?}, but the parameter is {:?}",
                            t.size(),
                            p.tensor.size()
                        )
                    }
                    Some(_) => {}
                }
            }
            match (steps.get(&p.name), step) {
                (None, _) => bail!("the optimizer state has no step count for '{}'", p.name),
                (Some(&s), Some(seen)) if s != seen => {
                    bail!("the optimizer state's step counts differ ({seen} and {s} for '{}'); lmloop steps all parameters together", p.name)
                }
                (Some(&s), _) => step = Some(s),
            }
        }
        tch::no_grad(|| {
            for p in &self.params {
                for (flat, key) in [(&self.exp_avg, "exp_avg"), (&self.exp_avg_sq, "exp_avg_sq")] {
                    let src = &tensors[&format!("{key}.{}", p.name)];
                    flat.narrow(0, p.offset, p.numel).copy_(&src.reshape([-1]));
                }
            }
        });
        self.step = step.unwrap_or(0);
        Ok(())
    }
}

pub type BTreeSteps = std::collections::BTreeMap<String, i64>;

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::OptimizerConfig, Device};

    /// The same update as libtorch's AdamW, up to rounding (ours does not fuse
    /// multiply-adds the way its kernels do).
    #[test]
    fn matches_libtorch_adamw() {
        let cfg = TrainConfig { weight_decay: 0.1, learning_rate: 1e-2, ..Default::default() };
        // Fixed values, not libtorch's global generator, which tests running in
        // parallel share (two `make()`s must give the same start).
        let fixed = |n: i64, f: f64| (Tensor::arange(n, (Kind::Float, Device::Cpu)) * f).sin() * 1.3;
        let make = || {
            let vs = nn::VarStore::new(Device::Cpu);
            let root = vs.root();
            let w = root.set_group(crate::model::DECAY_GROUP).var("w", &[8, 5], nn::Init::Const(0.0));
            let b = root.set_group(NO_DECAY_GROUP).var("b", &[8], nn::Init::Const(0.0));
            tch::no_grad(|| {
                w.shallow_clone().copy_(&fixed(40, 0.53).view([8, 5]));
                b.shallow_clone().copy_(&fixed(8, 1.17));
            });
            (vs, w, b)
        };
        let x = fixed(80, 0.29).view([16, 5]);
        let loss = |w: &Tensor, b: &Tensor| (x.matmul(&w.tr()) + b).tanh().square().mean(Kind::Float);

        let (vs_a, wa, ba) = make();
        let mut ours = AdamW::new(&vs_a, &cfg);
        let (vs_b, wb, bb) = make();
        let mut theirs =
            nn::AdamW { beta1: cfg.beta1, beta2: cfg.beta2, wd: cfg.weight_decay, eps: EPS, amsgrad: false }
                .build(&vs_b, cfg.learning_rate)
                .unwrap();
        theirs.set_weight_decay_group(crate::model::DECAY_GROUP, cfg.weight_decay);
        theirs.set_weight_decay_group(NO_DECAY_GROUP, 0.0);
        for _ in 0..50 {
            ours.zero_grad();
            loss(&wa, &ba).backward();
            ours.step(0.0);
            theirs.zero_grad();
            loss(&wb, &bb).backward();
            theirs.step();
        }
        let moved = f64::try_from((&wa - make().1).abs().max()).unwrap();
        assert!(moved > 0.05, "the weights moved ({moved})");
        for (a, b) in [(&wa, &wb), (&ba, &bb)] {
            let diff = f64::try_from((a - b).abs().max()).unwrap();
            assert!(diff < 1e-5, "max difference {diff}");
        }
    }

    /// Clipping inside the step equals scaling the gradients to the clip norm first
    /// (torch's `clip_grad_norm_`) and stepping without it; a small norm is left alone.
    #[test]
    fn clipping_scales_the_global_gradient_norm() {
        let cfg = TrainConfig { weight_decay: 0.1, learning_rate: 1e-2, ..Default::default() };
        let run = |clip_inside: bool, clip: f64| {
            // Fixed values, not libtorch's global generator, which tests running in
            // parallel share.
            let vs = nn::VarStore::new(Device::Cpu);
            let root = vs.root();
            let w = root.set_group(crate::model::DECAY_GROUP).var("w", &[6, 4], nn::Init::Const(0.0));
            let b = root.set_group(NO_DECAY_GROUP).var("b", &[6], nn::Init::Const(0.0));
            tch::no_grad(|| {
                let fixed = |n: i64, f: f64| (Tensor::arange(n, (Kind::Float, Device::Cpu)) * f).sin();
                w.shallow_clone().copy_(&fixed(24, 0.37).view([6, 4]));
                b.shallow_clone().copy_(&fixed(6, 0.71));
            });
            let mut opt = AdamW::new(&vs, &cfg);
            for i in 0..5 {
                opt.zero_grad();
                ((w.sum(Kind::Float) * (3.0 + i as f64)).square() + b.square().sum(Kind::Float)).backward();
                if clip_inside {
                    opt.step(clip);
                } else {
                    tch::no_grad(|| {
                        let (gw, gb) = (w.grad(), b.grad());
                        let norm = f64::try_from((gw.square().sum(Kind::Float) + gb.square().sum(Kind::Float)).sqrt())
                            .unwrap();
                        let coef = (clip / (norm + 1e-6)).min(1.0);
                        let _ = gw.shallow_clone().g_mul_scalar_(coef);
                        let _ = gb.shallow_clone().g_mul_scalar_(coef);
                    });
                    opt.step(0.0);
                }
            }
            (w.copy(), b.copy())
        };
        for clip in [0.5, 1e6] {
            let (wa, ba) = run(true, clip);
            let (wb, bb) = run(false, clip);
            for (a, b) in [(&wa, &wb), (&ba, &bb)] {
                let diff = f64::try_from((a - b).abs().max()).unwrap();
                assert!(diff < 1e-6, "clip {clip}: max difference {diff}");
            }
        }
        let (clipped, _) = run(true, 0.5);
        let (free, _) = run(true, 0.0);
        assert!(f64::try_from((clipped - free).abs().max()).unwrap() > 1e-4, "clipping changed the update");
    }

    #[test]
    fn state_round_trips() {
        let cfg = TrainConfig::default();
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3, 2], nn::Init::Const(1.0));
        let mut opt = AdamW::new(&vs, &cfg);
        w.sum(Kind::Float).backward();
        opt.step(0.0);
        let (tensors, steps) = opt.state();
        let mut other = AdamW::new(&vs, &cfg);
        let map: HashMap<String, Tensor> = tensors.into_iter().map(|(k, t)| (k, t.copy())).collect();
        other.load_state(&map, &steps).unwrap();
        assert_eq!(other.step, 1);
        assert_eq!(f64::try_from((&other.exp_avg - &opt.exp_avg).abs().max()).unwrap(), 0.0);
        let mut wrong = map;
        wrong.insert("exp_avg.w".into(), Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)));
        assert!(other.load_state(&wrong, &steps).unwrap_err().to_string().contains("exp_avg.w"));
    }
}

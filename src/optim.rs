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
use tch::{nn, Tensor};

/// ε of the update's denominator (torch's default).
pub const EPS: f64 = 1e-8;

struct Param {
    name: String,
    tensor: Tensor,
    weight_decay: f64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: i64,
}

pub struct AdamW {
    params: Vec<Param>,
    beta1: f64,
    beta2: f64,
    lr: f64,
}

impl AdamW {
    /// An optimizer over every trainable variable of `vs`. Variables in the no-decay
    /// group (biases, norm gains) get no weight decay; all others get `weight_decay`.
    pub fn new(vs: &nn::VarStore, cfg: &TrainConfig) -> Self {
        let vars = vs.variables_.lock().expect("the variable store is not poisoned");
        let group_of: HashMap<usize, usize> =
            vars.trainable_variables.iter().map(|v| (v.tensor.data_ptr() as usize, v.group)).collect();
        let mut named: Vec<(&String, &Tensor)> = vars.named_variables.iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        let params = named
            .into_iter()
            .map(|(name, t)| {
                let group = group_of.get(&(t.data_ptr() as usize)).copied().unwrap_or(0);
                Param {
                    name: name.clone(),
                    tensor: t.shallow_clone(),
                    weight_decay: if group == NO_DECAY_GROUP { 0.0 } else { cfg.weight_decay },
                    exp_avg: t.zeros_like(),
                    exp_avg_sq: t.zeros_like(),
                    step: 0,
                }
            })
            .collect();
        Self { params, beta1: cfg.beta1, beta2: cfg.beta2, lr: cfg.learning_rate }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.tensor.zero_grad();
        }
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        let (beta1, beta2, lr) = (self.beta1, self.beta2, self.lr);
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.tensor.grad();
                if !grad.defined() {
                    continue;
                }
                p.step += 1;
                if p.weight_decay != 0.0 {
                    let _ = p.tensor.g_mul_scalar_(1.0 - lr * p.weight_decay);
                }
                let _ = p.exp_avg.lerp_(&grad, 1.0 - beta1);
                let _ = p.exp_avg_sq.g_mul_scalar_(beta2);
                let _ = p.exp_avg_sq.addcmul_(&grad, &(&grad * (1.0 - beta2)));
                let bias1 = 1.0 - beta1.powi(p.step as i32);
                let bias2 = 1.0 - beta2.powi(p.step as i32);
                let mut denom = p.exp_avg_sq.sqrt();
                let _ = denom.g_div_scalar_(bias2.sqrt());
                let _ = denom.g_add_scalar_(EPS);
                let _ = p.tensor.addcdiv_(&p.exp_avg.g_mul_scalar(-lr / bias1), &denom);
            }
        });
    }

    /// The moments as named tensors (`exp_avg.NAME`, `exp_avg_sq.NAME`) and every
    /// parameter's step count, for a snapshot.
    pub fn state(&self) -> (Vec<(String, Tensor)>, BTreeSteps) {
        let mut tensors = Vec::with_capacity(2 * self.params.len());
        let mut steps = BTreeSteps::new();
        for p in &self.params {
            tensors.push((format!("exp_avg.{}", p.name), p.exp_avg.shallow_clone()));
            tensors.push((format!("exp_avg_sq.{}", p.name), p.exp_avg_sq.shallow_clone()));
            steps.insert(p.name.clone(), p.step);
        }
        (tensors, steps)
    }

    /// Restores what [`AdamW::state`] returned, checking every name and shape.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, steps: &BTreeSteps) -> Result<()> {
        for p in &self.params {
            for key in [format!("exp_avg.{}", p.name), format!("exp_avg_sq.{}", p.name)] {
                match tensors.get(&key) {
                    None => bail!("the optimizer state has no '{key}'"),
                    Some(t) if t.size() != p.tensor.size() => {
                        bail!("the optimizer state's '{key}' is {:?}, but the parameter is {:?}", t.size(), p.tensor.size())
                    }
                    Some(_) => {}
                }
            }
            if !steps.contains_key(&p.name) {
                bail!("the optimizer state has no step count for '{}'", p.name);
            }
        }
        tch::no_grad(|| {
            for p in &mut self.params {
                p.exp_avg.copy_(&tensors[&format!("exp_avg.{}", p.name)]);
                p.exp_avg_sq.copy_(&tensors[&format!("exp_avg_sq.{}", p.name)]);
                p.step = steps[&p.name];
            }
        });
        Ok(())
    }
}

/// Step count per parameter name.
pub type BTreeSteps = std::collections::BTreeMap<String, i64>;

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::OptimizerConfig, Device, Kind};

    /// The same update as libtorch's AdamW, up to rounding (ours does not fuse
    /// multiply-adds the way its kernels do).
    #[test]
    fn matches_libtorch_adamw() {
        let cfg = TrainConfig { weight_decay: 0.1, learning_rate: 1e-2, ..Default::default() };
        let make = || {
            tch::manual_seed(3);
            let vs = nn::VarStore::new(Device::Cpu);
            let root = vs.root();
            let w = root.set_group(crate::model::DECAY_GROUP).var("w", &[8, 5], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
            let b = root.set_group(NO_DECAY_GROUP).var("b", &[8], nn::Init::Randn { mean: 0.0, stdev: 1.0 });
            (vs, w, b)
        };
        let x = Tensor::randn([16, 5], (Kind::Float, Device::Cpu));
        let loss = |w: &Tensor, b: &Tensor| (x.matmul(&w.tr()) + b).tanh().square().mean(Kind::Float);

        let (vs_a, wa, ba) = make();
        let mut ours = AdamW::new(&vs_a, &cfg);
        let (vs_b, wb, bb) = make();
        let mut theirs = nn::AdamW { beta1: cfg.beta1, beta2: cfg.beta2, wd: cfg.weight_decay, eps: EPS, amsgrad: false }
            .build(&vs_b, cfg.learning_rate)
            .unwrap();
        theirs.set_weight_decay_group(crate::model::DECAY_GROUP, cfg.weight_decay);
        theirs.set_weight_decay_group(NO_DECAY_GROUP, 0.0);
        for _ in 0..50 {
            ours.zero_grad();
            loss(&wa, &ba).backward();
            ours.step();
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

    #[test]
    fn state_round_trips() {
        let cfg = TrainConfig::default();
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3, 2], nn::Init::Const(1.0));
        let mut opt = AdamW::new(&vs, &cfg);
        w.sum(Kind::Float).backward();
        opt.step();
        let (tensors, steps) = opt.state();
        let mut other = AdamW::new(&vs, &cfg);
        let map: HashMap<String, Tensor> = tensors.into_iter().map(|(k, t)| (k, t.copy())).collect();
        other.load_state(&map, &steps).unwrap();
        assert_eq!(other.params[0].step, 1);
        assert_eq!(f64::try_from((&other.params[0].exp_avg - &opt.params[0].exp_avg).abs().max()).unwrap(), 0.0);
        let mut wrong = map;
        wrong.insert("exp_avg.w".into(), Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)));
        assert!(other.load_state(&wrong, &steps).unwrap_err().to_string().contains("exp_avg.w"));
    }
}

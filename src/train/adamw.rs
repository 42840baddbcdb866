//! AdamW whose step runs as one fused pass per parameter on burn-flex and as burn's own
//! `AdamW` everywhere else (ndarray, CUDA, or `experiment.kernels = false`).
//!
//! Why: burn's step is ~15 tensor operations per parameter; at these sizes it cost 1.2-1.5
//! ms of tra_1min's ~8 ms training step on one thread, and all of it runs between the batch
//! parts, on one thread whatever `experiment.threads` says (docs/benchmarks.md, issue 11,
//! eighth part). Gradient clipping (per parameter, by norm, burn's `GradientClipping::Norm`)
//! happens here rather than in the `ModuleOptimizer`, so the fused path can do it in the
//! same pass. The state is burn's `AdamWState`, so checkpoints keep their format and a run
//! resumed on either path continues from the same moments.

use crate::kernels;
use burn::grad_clipping::GradientClipping;
use burn::optim::{
    AdamW as BurnAdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, LearningRate, Optimizer,
};
use burn::prelude::*;

/// β₁ and β₂: burn's defaults, and PyTorch's.
const BETAS: (f32, f32) = (0.9, 0.999);

/// AdamW with β₁ 0.9 and β₂ 0.999, each parameter's gradient clipped to `max_norm`.
#[derive(Clone)]
pub struct AdamW {
    hyper: kernels::adamw::Hyper,
    composed: BurnAdamW,
}

impl AdamW {
    pub fn new(epsilon: f32, weight_decay: f32, max_norm: Option<f32>) -> Self {
        let (beta_1, beta_2) = BETAS;
        let composed = AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_weight_decay(weight_decay)
            .build();
        let hyper = kernels::adamw::Hyper {
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
            max_norm,
        };
        Self { hyper, composed }
    }
}

impl AdamW {
    /// burn's clipping, then burn's step: the path of every backend but burn-flex.
    fn composed<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> (Tensor<D>, Option<AdamWState<D>>) {
        let grad = match self.hyper.max_norm {
            Some(max) => GradientClipping::Norm(max).clip_gradient(grad),
            None => grad,
        };
        self.composed.step(lr, tensor, grad, state)
    }

    /// Clipping and step in one pass through the fused kernel (burn-flex only).
    fn fused<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> (Tensor<D>, Option<AdamWState<D>>) {
        let (time, m1, m2) = match state {
            Some(s) => (
                s.momentum.time + 1,
                s.momentum.moment_1,
                s.momentum.moment_2,
            ),
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let [tensor, moment_1, moment_2] =
            kernels::adamw(self.hyper, lr, time as i32, [tensor, grad, m1, m2]);
        let momentum = AdaptiveMomentumState::new(time, moment_1, moment_2);
        (tensor, Some(AdamWState::new(momentum)))
    }
}

impl Optimizer for AdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        // An AMSGrad state (never written by this optimiser) keeps burn's arithmetic.
        let amsgrad = state
            .as_ref()
            .is_some_and(|s| s.momentum.max_moment_2.is_some());
        if kernels::available(&tensor.device()) && !amsgrad {
            self.fused(lr, tensor, grad, state)
        } else {
            self.composed(lr, tensor, grad, state)
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        BurnAdamW::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    /// The parameter and both moments after a step.
    fn values((param, state): &(Tensor<2>, Option<AdamWState<2>>)) -> [TensorData; 3] {
        let m = &state.as_ref().expect("a step leaves a state").momentum;
        [param, &m.moment_1, &m.moment_2].map(|t| t.to_data())
    }

    /// Five steps of both paths from the same parameter and gradients, on the CPU device.
    fn both_paths(max_norm: Option<f32>, scale: f32) -> (Vec<TensorData>, Vec<TensorData>) {
        let device = Device::flex();
        let optim = AdamW::new(1e-8, 0.01, max_norm);
        let start = Tensor::<2>::random([7, 13], Distribution::Normal(0.0, 1.0), &device);
        let (mut fused, mut composed) = ((start.clone(), None), (start, None));
        let mut out = (Vec::new(), Vec::new());
        for step in 0..5 {
            let grad = Tensor::<2>::random([7, 13], Distribution::Normal(0.0, 1.0), &device)
                .mul_scalar(scale);
            let lr = 1e-2 / f64::from(step + 1);
            fused = optim.fused(lr, fused.0, grad.clone(), fused.1);
            composed = optim.composed(lr, composed.0, grad, composed.1);
            out.0.extend(values(&fused));
            out.1.extend(values(&composed));
        }
        (out.0, out.1)
    }

    #[test]
    fn fused_step_gives_burns_bits_without_clipping() {
        let (fused, composed) = both_paths(None, 1.0);
        assert_eq!(fused, composed);
    }

    #[test]
    fn fused_clipping_matches_burns_within_rounding() {
        // Gradients of norm ~30 against a limit of 1: every step clips.
        let (fused, composed) = both_paths(Some(1.0), 3.0);
        for (f, c) in fused.iter().zip(&composed) {
            f.assert_approx_eq::<f32>(c, burn::tensor::Tolerance::absolute(1e-6));
        }
    }
}

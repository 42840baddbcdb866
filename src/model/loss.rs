//! The loss: cross-entropy over a batch's targets, padding ignored, optionally with label
//! smoothing. On the CPU backend it runs as one fused operation with its own backward pass
//! (crates/kernels/src/loss.rs); elsewhere as burn's `CrossEntropyLoss`, which stays the
//! oracle in the tests.

use crate::data::vocab::PAD;
use crate::kernels;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::prelude::*;
use burn::tensor::DType;

/// Cross-entropy with PAD targets not scored and label smoothing α (0: none).
#[derive(Debug, Clone)]
pub struct Loss {
    smoothing: f32,
    composed: CrossEntropyLoss,
}

impl Loss {
    pub fn new(smoothing: f32, device: &Device) -> Self {
        let composed = CrossEntropyLossConfig::new()
            .with_pad_tokens(Some(vec![PAD as usize]))
            .with_smoothing((smoothing > 0.0).then_some(smoothing))
            .init(device);
        Self {
            smoothing,
            composed,
        }
    }

    /// The mean loss over the scored rows of logits [rows, classes] and targets [rows].
    pub fn forward(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        if kernels::available(&logits.device()) && logits.dtype() == DType::F32 {
            return kernels::cross_entropy(logits, targets, PAD as i64, self.smoothing);
        }
        self.composed.forward(logits, targets)
    }

    /// burn's own loss, whatever the backend.
    #[cfg(test)]
    fn forward_composed(&self, logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
        self.composed.forward(logits, targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn the_fused_loss_matches_burns_in_value_and_gradient() {
        let device = Device::flex().autodiff();
        let targets: Vec<i64> = vec![3, 1, PAD as i64, 4, 2, PAD as i64, 1, 0];
        let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [8]), &device);
        let x = Tensor::<2>::random([8, 6], Distribution::Normal(0.0, 3.0), &device);
        for smoothing in [0.0, 0.1] {
            let loss = Loss::new(smoothing, &device);
            let mut results = Vec::new();
            for fused in [true, false] {
                let x = x.clone().require_grad();
                let value = if fused {
                    loss.forward(x.clone(), targets.clone())
                } else {
                    loss.forward_composed(x.clone(), targets.clone())
                };
                let grads = value.clone().mul_scalar(1.7).backward();
                let grad: Vec<f32> = x.grad(&grads).unwrap().to_data().iter().collect();
                results.push((value.into_scalar::<f32>(), grad));
            }
            let (composed, fused) = (results.pop().unwrap(), results.pop().unwrap());
            assert!(
                (fused.0 - composed.0).abs() < 1e-5,
                "{} vs {}",
                fused.0,
                composed.0
            );
            for (a, b) in fused.1.iter().zip(&composed.1) {
                assert!((a - b).abs() < 1e-5, "gradients {a} vs {b}");
            }
        }
    }
}

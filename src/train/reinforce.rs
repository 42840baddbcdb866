//! REINFORCE (`train.objective = "reinforce"`): the model learns from reward alone. For
//! each prompt of a batch it samples an answer (at `train.temperature`), is rewarded 1 for
//! an exact closing (or, with `train.partial_credit`, the share written right before its
//! first mistake), and the log-probability of each sampled answer is pushed up or down by
//! its reward minus the batch's mean reward: the baseline that keeps the gradient's
//! variance down without a learned critic. The labelled answers are used only to reward.

use crate::data::batcher::{make_batch, Layout};
use crate::data::vocab::PAD;
use crate::data::{Example, Vocab};
use crate::model::{Decoded, Model};
use crate::spec::Spec;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;

/// What one REINFORCE step did.
pub struct Step {
    pub model: Model,
    /// The policy-gradient loss (its value is not a likelihood: it centres on zero).
    pub loss: f64,
    /// The batch's mean reward.
    pub reward: f64,
    /// False (model untouched) when the loss was not finite.
    pub ok: bool,
}

/// The reward of `sample` for `example`.
pub fn reward(example: &Example, sample: &Decoded, partial_credit: bool) -> f64 {
    let exact = sample.ended && sample.tokens == example.answer;
    if exact || !partial_credit {
        return f64::from(u8::from(exact));
    }
    // Right tokens before the first wrong one; the end token counts as one more.
    let right = sample
        .tokens
        .iter()
        .zip(&example.answer)
        .take_while(|(a, b)| a == b)
        .count();
    right as f64 / (example.answer.len() + 1) as f64
}

/// The sampled answer as an example: its tokens, and the end token when it wrote one (an
/// answer that ended at once is the end token alone), so that it is never empty.
fn as_example(example: &Example, sample: &Decoded, vocab: &Vocab) -> Example {
    let mut answer = sample.tokens.clone();
    if sample.ended {
        answer.push(vocab.end());
    }
    Example {
        prefix: example.prefix.clone(),
        answer,
    }
}

/// One policy-gradient step on `examples`.
#[allow(clippy::too_many_arguments)]
pub fn step(
    model: Model,
    optim: &mut ModuleOptimizer,
    examples: &[&Example],
    vocab: &Vocab,
    layout: Layout,
    spec: &Spec,
    rng: &mut dyn rand::RngCore,
    device: &Device,
    lr: f64,
    masks: Option<&crate::prune::Masks>,
) -> Step {
    let t = &spec.train;
    let prompts: Vec<Vec<u32>> = examples.iter().map(|e| e.prompt(vocab)).collect();
    let samples = model
        .valid()
        .sample(
            &prompts,
            spec.max_answer_len(),
            vocab,
            t.temperature,
            rng,
            &device.clone().without_autodiff(),
        )
        .expect("validation refuses reinforce for ber");
    let rewards: Vec<f64> = examples
        .iter()
        .zip(&samples)
        .map(|(e, s)| reward(e, s, t.partial_credit))
        .collect();
    let mean = rewards.iter().sum::<f64>() / rewards.len().max(1) as f64;
    let sampled: Vec<Example> = examples
        .iter()
        .zip(&samples)
        .map(|(e, s)| as_example(e, s, vocab))
        .collect();
    let advantages: Vec<f64> = rewards.iter().map(|r| r - mean).collect();
    let (model, loss, ok) = update(
        model,
        optim,
        &sampled,
        &advantages,
        vocab,
        layout,
        device,
        lr,
        masks,
    );
    Step {
        model,
        loss,
        reward: mean,
        ok,
    }
}

/// The sampled answers' log-probabilities, each weighted by its advantage, summed.
fn weighted_log_prob(
    model: &Model,
    sampled: &[Example],
    advantages: &[f64],
    vocab: &Vocab,
    layout: Layout,
    device: &Device,
) -> Tensor<1> {
    let refs: Vec<&Example> = sampled.iter().collect();
    let batch = make_batch(&refs, vocab, layout, device, None);
    // The batch scores each sampled token and then an end token it appends: drop that
    // last one, which the model did not choose.
    let (size, len) = (batch.size, batch.len);
    let mut weights = vec![0f32; size * len];
    let mut targets = vec![0i64; size * len];
    for (row, advantage) in advantages.iter().enumerate().take(size) {
        let marked: Vec<usize> = (row * len..(row + 1) * len)
            .filter(|&i| batch.answer_ids[i] != PAD as i64)
            .collect();
        for &i in &marked[..marked.len().saturating_sub(1)] {
            weights[i] = *advantage as f32;
            targets[i] = batch.answer_ids[i];
        }
    }
    let logits = model.forward(&batch);
    let vocab_size = logits.dims()[2];
    let logp = log_softmax(logits.reshape([size * len, vocab_size]), 1);
    let targets = Tensor::<2, Int>::from_data(TensorData::new(targets, [size * len, 1]), device);
    let weights = Tensor::<1>::from_data(TensorData::new(weights, [size * len]), device);
    (logp.gather(1, targets).reshape([size * len]) * weights).sum()
}

/// One gradient step that raises the log-probability of answers with a positive advantage
/// and lowers it for those with a negative one. Returns the model, the loss, and false
/// (model untouched) when the loss was not finite.
#[allow(clippy::too_many_arguments)]
fn update(
    model: Model,
    optim: &mut ModuleOptimizer,
    sampled: &[Example],
    advantages: &[f64],
    vocab: &Vocab,
    layout: Layout,
    device: &Device,
    lr: f64,
    masks: Option<&crate::prune::Masks>,
) -> (Model, f64, bool) {
    let objective = weighted_log_prob(&model, sampled, advantages, vocab, layout, device);
    let loss = objective.neg() / sampled.len().max(1) as f64;
    let value = f64::from(loss.clone().into_scalar::<f32>());
    if !value.is_finite() {
        return (model, value, false);
    }
    (super::descend(model, optim, loss, lr, masks), value, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Example {
        Example {
            prefix: vec![1, 3],
            answer: vec![4, 2],
        }
    }

    #[test]
    fn only_an_exact_closing_earns_a_reward_unless_partial_credit() {
        let exact = Decoded {
            tokens: vec![4, 2],
            ended: true,
        };
        let unfinished = Decoded {
            tokens: vec![4, 2],
            ended: false,
        };
        let half = Decoded {
            tokens: vec![4, 6],
            ended: true,
        };
        assert_eq!(reward(&example(), &exact, false), 1.0);
        assert_eq!(reward(&example(), &unfinished, false), 0.0);
        assert_eq!(reward(&example(), &half, false), 0.0);
        assert!((reward(&example(), &half, true) - 1.0 / 3.0).abs() < 1e-12);
        assert!((reward(&example(), &unfinished, true) - 2.0 / 3.0).abs() < 1e-12);
    }

    /// One step with a positive advantage on the right answer and a negative one on a
    /// wrong answer raises the first's log-probability and lowers the second's.
    #[test]
    fn a_step_raises_the_log_probability_of_a_rewarded_answer() {
        let spec = crate::spec::Spec::default();
        let vocab = crate::data::dataset::vocab(&spec);
        let device = Device::flex().autodiff();
        let model = Model::init(&spec, vocab.size(), &device);
        let layout = crate::model::layout(&spec, &vocab);
        let right = Example {
            prefix: vec![1, 3],
            answer: vec![4, 2, vocab.end()],
        };
        let wrong = Example {
            prefix: vec![1, 3],
            answer: vec![2, 4, vocab.end()],
        };
        let log_prob = |model: &Model, e: &Example| {
            let v = weighted_log_prob(
                model,
                std::slice::from_ref(e),
                &[1.0],
                &vocab,
                layout,
                &device,
            );
            f64::from(v.into_scalar::<f32>())
        };
        let before = (log_prob(&model, &right), log_prob(&model, &wrong));
        let mut optim = crate::train::optimiser(&spec);
        let (model, _, ok) = update(
            model,
            &mut optim,
            &[right.clone(), wrong.clone()],
            &[1.0, -1.0],
            &vocab,
            layout,
            &device,
            1e-2,
            None,
        );
        assert!(ok);
        let after = (log_prob(&model, &right), log_prob(&model, &wrong));
        assert!(after.0 > before.0, "rewarded: {} -> {}", before.0, after.0);
        assert!(after.1 < before.1, "penalised: {} -> {}", before.1, after.1);
    }
}

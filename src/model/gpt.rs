//! GPT-style decoder-only Transformer: causal self-attention over the whole record,
//! next-token logits. Decoding reuses a KV cache.

use super::attention::{self, Masks};
use super::decode::{last_position, Incremental};
use super::embed::{encoder_blocks, TokenEmbedding};
use crate::spec::ModelSpec;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderAutoregressiveCache, TransformerEncoderInput,
};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Gpt {
    pub(super) embed: TokenEmbedding,
    pub(super) blocks: TransformerEncoder,
    pub(super) norm: LayerNorm,
    pub(super) head: Linear,
}

impl Gpt {
    pub fn init(
        spec: &ModelSpec,
        vocab_size: usize,
        max_positions: usize,
        device: &Device,
    ) -> Self {
        Self {
            embed: TokenEmbedding::init(spec, vocab_size, max_positions, device),
            blocks: encoder_blocks(spec, spec.n_layers, device),
            norm: LayerNormConfig::new(spec.d_model).init(device),
            head: LinearConfig::new(spec.d_model, vocab_size).init(device),
        }
    }

    /// # Shapes
    /// tokens [batch, len] -> logits [batch, len, vocab]
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, len] = tokens.dims();
        let mask = generate_autoregressive_mask(batch, len, &tokens.device());
        // Right padding needs no padding mask: under the causal mask a real position never
        // sees a later (padded) one.
        let x = self.embed.forward(tokens);
        let x = match self.embed.relative() {
            None if !attention::replay(&x.device()) => self
                .blocks
                .forward(TransformerEncoderInput::new(x).mask_attn(mask)),
            relative => {
                let masks = Masks {
                    pad: None,
                    attn: Some(mask),
                };
                attention::encode(&self.blocks, x, &masks, relative)
            }
        };
        attention::linear(&self.head, attention::norm(&self.norm, x))
    }

    fn cached(
        &self,
        tokens: Tensor<2, Int>,
        cache: &mut TransformerEncoderAutoregressiveCache,
    ) -> Tensor<2> {
        if self.embed.relative().is_some() {
            // burn's cache runs its own attention, without the scheme: re-read the sequence.
            return last_position(self.forward(tokens));
        }
        let [batch, len] = tokens.dims();
        let mask = generate_autoregressive_mask(batch, len, &tokens.device());
        let x = self.embed.forward(tokens);
        let input = TransformerEncoderInput::new(x).mask_attn(mask);
        let x = self.blocks.forward_autoregressive_inference(input, cache);
        last_position(self.head.forward(self.norm.forward(x)))
    }
}

/// The tokens so far and the per-layer cache of their keys, values and outputs.
pub struct GptState {
    tokens: Tensor<2, Int>,
    cache: TransformerEncoderAutoregressiveCache,
}

impl Incremental for Gpt {
    type State = GptState;

    fn prefill(&self, tokens: Tensor<2, Int>) -> (Tensor<2>, GptState) {
        let mut cache = self.blocks.new_autoregressive_cache();
        let logits = self.cached(tokens.clone(), &mut cache);
        (logits, GptState { tokens, cache })
    }

    fn step(&self, next: Tensor<2, Int>, mut state: GptState) -> (Tensor<2>, GptState) {
        // burn's cache takes the whole sequence and computes only the new position.
        state.tokens = Tensor::cat(vec![state.tokens, next], 1);
        let logits = self.cached(state.tokens.clone(), &mut state.cache);
        (logits, state)
    }
}

//! Encoder-decoder Transformer: the encoder reads `input` + prefix; the decoder starts
//! from `,output` and writes the closers and the final `,`, attending to the encoder.

use super::attention::{self, Masks};
use super::decode::{last_position, Incremental};
use super::embed::{encoder_blocks, TokenEmbedding};
use crate::data::vocab::PAD;
use crate::spec::ModelSpec;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::transformer::{
    TransformerDecoder, TransformerDecoderAutoregressiveCache, TransformerDecoderConfig,
    TransformerDecoderInput, TransformerEncoder, TransformerEncoderInput,
};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Tra {
    pub(super) source_embed: TokenEmbedding,
    pub(super) target_embed: TokenEmbedding,
    pub(super) encoder: TransformerEncoder,
    pub(super) decoder: TransformerDecoder,
    pub(super) norm: LayerNorm,
    pub(super) head: Linear,
}

impl Tra {
    pub fn init(
        spec: &ModelSpec,
        vocab_size: usize,
        max_positions: usize,
        device: &Device,
    ) -> Self {
        Self {
            source_embed: TokenEmbedding::init(spec, vocab_size, max_positions, device),
            target_embed: TokenEmbedding::init(spec, vocab_size, max_positions, device),
            encoder: encoder_blocks(spec, spec.n_enc_layers, device),
            decoder: TransformerDecoderConfig::new(
                spec.d_model,
                spec.d_ff,
                spec.n_heads,
                spec.n_dec_layers,
            )
            .with_dropout(spec.dropout)
            .with_norm_first(spec.norm_first)
            .with_activation(super::embed::activation(spec))
            .init(device),
            norm: LayerNormConfig::new(spec.d_model).init(device),
            head: LinearConfig::new(spec.d_model, vocab_size).init(device),
        }
    }

    /// # Shapes
    /// source [batch, src_len], tokens [batch, len] -> logits [batch, len, vocab]
    pub fn forward(&self, source: Tensor<2, Int>, tokens: Tensor<2, Int>) -> Tensor<3> {
        let (memory, source_pad) = self.encode(source);
        let x = self.decode(tokens, memory, Some(source_pad));
        attention::linear(&self.head, attention::norm(&self.norm, x))
    }

    /// The decoder over `tokens` [batch, len] attending to `memory`: burn's, or replayed
    /// with the relative scheme in its self-attention.
    fn decode(
        &self,
        tokens: Tensor<2, Int>,
        memory: Tensor<3>,
        source_pad: Option<Tensor<2, Bool>>,
    ) -> Tensor<3> {
        let [batch, len] = tokens.dims();
        let causal = generate_autoregressive_mask(batch, len, &tokens.device());
        let x = self.target_embed.forward(tokens);
        let relative = self.target_embed.relative();
        if relative.is_none() && !attention::replay(&x.device()) {
            let mut input = TransformerDecoderInput::new(x, memory).target_mask_attn(causal);
            if let Some(pad) = source_pad {
                input = input.memory_mask_pad(pad);
            }
            return self.decoder.forward(input);
        }
        let target = Masks {
            pad: None,
            attn: Some(causal),
        };
        let source = Masks {
            pad: source_pad,
            attn: None,
        };
        let mut x = x;
        for layer in &self.decoder.layers {
            x = attention::decode_layer(layer, x, &memory, &target, &source, relative);
        }
        x
    }

    /// Memory [batch, src_len, d_model] and the source padding mask (true = padding).
    fn encode(&self, source: Tensor<2, Int>) -> (Tensor<3>, Tensor<2, Bool>) {
        let pad = source.clone().equal_elem(PAD as i64);
        let x = self.source_embed.forward(source);
        let memory = match self.source_embed.relative() {
            None if !attention::replay(&x.device()) => self
                .encoder
                .forward(TransformerEncoderInput::new(x).mask_pad(pad.clone())),
            relative => {
                let masks = Masks {
                    pad: Some(pad.clone()),
                    attn: None,
                };
                attention::encode(&self.encoder, x, &masks, relative)
            }
        };
        (memory, pad)
    }

    fn cached(&self, state: &mut TraState) -> Tensor<2> {
        if self.target_embed.relative().is_some() {
            // burn's cache runs its own attention, without the scheme: re-read the answer
            // so far (prompts of one length carry no source padding).
            let x = self.decode(state.tokens.clone(), state.memory.clone(), None);
            return last_position(self.head.forward(self.norm.forward(x)));
        }
        let [batch, len] = state.tokens.dims();
        let causal = generate_autoregressive_mask(batch, len, &state.tokens.device());
        let x = self.target_embed.forward(state.tokens.clone());
        let input = TransformerDecoderInput::new(x, state.memory.clone()).target_mask_attn(causal);
        let out = self
            .decoder
            .forward_autoregressive_inference(input, &mut state.cache);
        last_position(self.head.forward(self.norm.forward(out)))
    }
}

pub struct TraState {
    memory: Tensor<3>,
    tokens: Tensor<2, Int>,
    cache: TransformerDecoderAutoregressiveCache,
}

impl Incremental for Tra {
    type State = TraState;

    /// The prompt's last token (`,output`) starts the decoder; the rest is the source.
    fn prefill(&self, prompt: Tensor<2, Int>) -> (Tensor<2>, TraState) {
        let [batch, len] = prompt.dims();
        let source = prompt.clone().slice([0..batch, 0..len - 1]);
        let tokens = prompt.slice([0..batch, len - 1..len]);
        let (memory, _) = self.encode(source);
        let mut state = TraState {
            memory,
            tokens,
            cache: self.decoder.new_autoregressive_cache(),
        };
        (self.cached(&mut state), state)
    }

    fn step(&self, next: Tensor<2, Int>, mut state: TraState) -> (Tensor<2>, TraState) {
        state.tokens = Tensor::cat(vec![state.tokens, next], 1);
        (self.cached(&mut state), state)
    }
}

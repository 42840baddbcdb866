//! Token embeddings plus positions, shared by the attention models. `rope` and `alibi` add
//! nothing here (attention.rs applies them inside attention), nor does `none`.

use crate::spec::{Activation, ModelSpec, PosEncoding};
use burn::nn::activation::ActivationConfig;
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig};
use burn::nn::{Embedding, EmbeddingConfig, PositionalEncoding, PositionalEncodingConfig};
use burn::prelude::*;

#[allow(clippy::large_enum_variant)] // one per model
#[derive(Module, Debug)]
pub enum Positions {
    Learned(Embedding),
    Sinusoidal(PositionalEncoding),
    /// Nothing added to the embedding: `rope`, `alibi` (applied in attention) or `none`.
    Elsewhere(NoTable),
}

/// No parameters: the scheme that is not a table, kept so the model knows it.
#[derive(Module, Debug)]
pub struct NoTable {
    #[module(skip)]
    pub scheme: PosEncoding,
}

#[derive(Module, Debug)]
pub struct TokenEmbedding {
    tokens: Embedding,
    positions: Positions,
}

impl TokenEmbedding {
    /// `n_tokens` embedding rows; positions `0..max_positions`.
    pub fn init(spec: &ModelSpec, n_tokens: usize, max_positions: usize, device: &Device) -> Self {
        let positions = match spec.pos_encoding {
            PosEncoding::Learned => {
                Positions::Learned(EmbeddingConfig::new(max_positions, spec.d_model).init(device))
            }
            PosEncoding::Sinusoidal => Positions::Sinusoidal(
                PositionalEncodingConfig::new(spec.d_model)
                    .with_max_sequence_size(max_positions)
                    .init(device),
            ),
            scheme @ (PosEncoding::Rope | PosEncoding::Alibi | PosEncoding::None) => {
                Positions::Elsewhere(NoTable { scheme })
            }
        };
        Self {
            tokens: EmbeddingConfig::new(n_tokens, spec.d_model).init(device),
            positions,
        }
    }

    /// # Shapes
    /// tokens [batch, len] -> [batch, len, d_model]
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [_, len] = tokens.dims();
        let device = tokens.device();
        let x = self.tokens.forward(tokens);
        match &self.positions {
            Positions::Learned(table) => {
                let index = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
                x + table.forward(index) // [1, len, d_model] broadcast over the batch
            }
            Positions::Sinusoidal(encoding) => encoding.forward(x),
            Positions::Elsewhere(_) => x,
        }
    }

    /// The scheme attention applies itself, if any.
    pub fn relative(&self) -> Option<super::attention::Relative> {
        match &self.positions {
            Positions::Elsewhere(t) => super::attention::Relative::of(t.scheme),
            _ => None,
        }
    }
}

/// A stack of `n_layers` Transformer encoder blocks with the spec's width, heads, feed-forward
/// size, dropout and norm placement (GPT's causal blocks and BERT's encoder alike).
pub fn encoder_blocks(spec: &ModelSpec, n_layers: usize, device: &Device) -> TransformerEncoder {
    TransformerEncoderConfig::new(spec.d_model, spec.d_ff, spec.n_heads, n_layers)
        .with_dropout(spec.dropout)
        .with_norm_first(spec.norm_first)
        .with_activation(activation(spec))
        .init(device)
}

/// The spec's feed-forward activation as burn's configuration.
pub fn activation(spec: &ModelSpec) -> ActivationConfig {
    match spec.activation {
        Activation::Gelu => ActivationConfig::Gelu,
        Activation::Relu => ActivationConfig::Relu,
    }
}

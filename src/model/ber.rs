//! BERT-style bidirectional encoder trained as a masked language model. The answer is
//! written into mask slots after `,output`, all in one pass (non-autoregressive), and read
//! up to the first `,`.

use super::attention::{self, Masks};
use super::decode::{self, Decoded};
use super::embed::{encoder_blocks, TokenEmbedding};
use crate::data::vocab::PAD;
use crate::spec::ModelSpec;
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderInput};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

#[derive(Module, Debug)]
pub struct Ber {
    pub(super) embed: TokenEmbedding,
    pub(super) encoder: TransformerEncoder,
    pub(super) norm: LayerNorm,
    pub(super) head: Linear,
}

impl Ber {
    /// The embedding has one more row than the vocabulary: the mask token, id `vocab_size`.
    pub fn init(
        spec: &ModelSpec,
        vocab_size: usize,
        max_positions: usize,
        device: &Device,
    ) -> Self {
        Self {
            embed: TokenEmbedding::init(spec, vocab_size + 1, max_positions, device),
            encoder: encoder_blocks(spec, spec.n_layers, device),
            norm: LayerNormConfig::new(spec.d_model).init(device),
            head: LinearConfig::new(spec.d_model, vocab_size).init(device),
        }
    }

    /// # Shapes
    /// tokens [batch, len] -> logits [batch, len, vocab]
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let pad = tokens.clone().equal_elem(PAD as i64);
        let x = self.embed.forward(tokens);
        let x = match self.embed.relative() {
            None if !attention::replay(&x.device()) => self
                .encoder
                .forward(TransformerEncoderInput::new(x).mask_pad(pad)),
            relative => {
                let masks = Masks {
                    pad: Some(pad),
                    attn: None,
                };
                attention::encode(&self.encoder, x, &masks, relative)
            }
        };
        attention::linear(&self.head, attention::norm(&self.norm, x))
    }

    /// Fills `slots` mask tokens after each prompt in one pass; prompts of one length are
    /// batched together so no padding is needed.
    pub fn fill(
        &self,
        prompts: &[Vec<u32>],
        slots: usize,
        mask_id: u32,
        end: u32,
        device: &Device,
    ) -> Vec<Decoded> {
        let mut out = vec![Decoded::default(); prompts.len()];
        for (len, rows) in decode::length_groups(prompts) {
            let width = len + slots;
            let tokens = decode::group_tensor(prompts, &rows, slots, mask_id, device);
            let best: Vec<i64> = self
                .forward(tokens)
                .argmax(2)
                .to_data()
                .iter::<i64>()
                .collect();
            for (k, &row) in rows.iter().enumerate() {
                let d = &mut out[row];
                for &token in &best[k * width + len..(k + 1) * width] {
                    if token as u32 == end {
                        d.ended = true;
                        break;
                    }
                    d.tokens.push(token as u32);
                }
            }
        }
        out
    }
}

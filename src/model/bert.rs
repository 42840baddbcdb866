//! BERT-style bidirectional encoder trained as a masked language model. The answer is
//! written into mask slots after `,output`, all in one pass (non-autoregressive), and read
//! up to the first `,`.

use super::decode::Decoded;
use super::embed::TokenEmbedding;
use crate::data::vocab::PAD;
use crate::spec::ModelSpec;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use std::collections::BTreeMap;

#[derive(Module, Debug)]
pub struct Bert {
    embed: TokenEmbedding,
    encoder: TransformerEncoder,
    norm: LayerNorm,
    head: Linear,
}

impl Bert {
    /// The embedding has one more row than the vocabulary: the mask token, id `vocab_size`.
    pub fn init(
        spec: &ModelSpec,
        vocab_size: usize,
        max_positions: usize,
        device: &Device,
    ) -> Self {
        Self {
            embed: TokenEmbedding::init(spec, vocab_size + 1, max_positions, device),
            encoder: TransformerEncoderConfig::new(
                spec.d_model,
                spec.d_ff,
                spec.n_heads,
                spec.n_layers,
            )
            .with_dropout(spec.dropout)
            .with_norm_first(spec.norm_first)
            .init(device),
            norm: LayerNormConfig::new(spec.d_model).init(device),
            head: LinearConfig::new(spec.d_model, vocab_size).init(device),
        }
    }

    /// # Shapes
    /// tokens [batch, len] -> logits [batch, len, vocab]
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let pad = tokens.clone().equal_elem(PAD as i64);
        let x = self.embed.forward(tokens);
        let x = self
            .encoder
            .forward(TransformerEncoderInput::new(x).mask_pad(pad));
        self.head.forward(self.norm.forward(x))
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
        let mut out = vec![
            Decoded {
                tokens: Vec::new(),
                ended: false
            };
            prompts.len()
        ];
        let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, p) in prompts.iter().enumerate() {
            by_len.entry(p.len()).or_default().push(i);
        }
        for (len, rows) in by_len {
            for chunk in rows.chunks(super::decode::DECODE_BATCH) {
                let width = len + slots;
                let ids: Vec<i64> = chunk
                    .iter()
                    .flat_map(|&i| {
                        let slots = std::iter::repeat_n(mask_id, slots);
                        prompts[i].iter().copied().chain(slots).map(i64::from)
                    })
                    .collect();
                let tokens =
                    Tensor::<2, Int>::from_data(TensorData::new(ids, [chunk.len(), width]), device);
                let best: Vec<i64> = self
                    .forward(tokens)
                    .argmax(2)
                    .to_data()
                    .iter::<i64>()
                    .collect();
                for (k, &row) in chunk.iter().enumerate() {
                    let written = &best[k * width + len..(k + 1) * width];
                    let d = &mut out[row];
                    for &token in written {
                        if token as u32 == end {
                            d.ended = true;
                            break;
                        }
                        d.tokens.push(token as u32);
                    }
                }
            }
        }
        out
    }
}

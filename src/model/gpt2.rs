//! The text GPT: a GPT-2 decoder (learned positions, pre-norm blocks, exact GELU, tied
//! input and output embeddings) whose parameters are named and laid out as Hugging Face's
//! `GPT2LMHeadModel` names them, so that `runner export --format hf` is a renaming of
//! norms and a prefix, nothing more. burn's `Linear.weight` is `[d_in, d_out]`, the layout of
//! GPT-2's `Conv1D`.

use super::decode::{last_position, Incremental};
use crate::spec::ModelSpec;
use burn::module::Param;
use burn::nn::attention::generate_autoregressive_mask;
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};

/// GPT-2's initialisation: weights from N(0, 0.02), which keeps the tied output logits near
/// zero at the start (burn's embedding default, N(0, 1), would make them large).
pub const INIT: Initializer = Initializer::Normal {
    mean: 0.0,
    std: 0.02,
};

/// The sizes a text GPT is built from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gpt2Shape {
    pub n_tokens: usize,
    pub n_positions: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub n_layers: usize,
    pub dropout: f64,
    pub qkv_bias: bool,
}

impl Gpt2Shape {
    pub fn of(spec: &ModelSpec, n_tokens: usize, n_positions: usize) -> Self {
        Self {
            n_tokens,
            n_positions,
            d_model: spec.d_model,
            n_heads: spec.n_heads,
            d_ff: spec.d_ff,
            n_layers: spec.n_layers,
            dropout: spec.dropout,
            qkv_bias: spec.qkv_bias,
        }
    }
}

#[derive(Module, Debug)]
pub struct Gpt2 {
    pub wte: Embedding,
    pub wpe: Embedding,
    drop: Dropout,
    pub h: Vec<Block>,
    pub ln_f: LayerNorm,
}

#[derive(Module, Debug)]
pub struct Block {
    ln_1: LayerNorm,
    attn: Attention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

#[derive(Module, Debug)]
pub struct Attention {
    /// Queries, keys and values in one product: [d_model, 3 * d_model].
    c_attn: Linear,
    c_proj: Linear,
    attn_drop: Dropout,
    resid_drop: Dropout,
    n_heads: usize,
}

#[derive(Module, Debug)]
pub struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    drop: Dropout,
}

impl Gpt2 {
    /// A fresh model; `init` draws every weight and bias (the export builds one from zeros).
    pub fn init(shape: &Gpt2Shape, init: Initializer, device: &Device) -> Self {
        let s = *shape;
        let linear = |d_in: usize, d_out: usize, bias: bool| {
            LinearConfig::new(d_in, d_out)
                .with_bias(bias)
                .with_initializer(init.clone())
                .init(device)
        };
        let norm = || LayerNormConfig::new(s.d_model).init(device);
        let drop = || DropoutConfig::new(s.dropout).init();
        let block = || Block {
            ln_1: norm(),
            attn: Attention {
                c_attn: linear(s.d_model, 3 * s.d_model, s.qkv_bias),
                c_proj: linear(s.d_model, s.d_model, true),
                attn_drop: drop(),
                resid_drop: drop(),
                n_heads: s.n_heads,
            },
            ln_2: norm(),
            mlp: Mlp {
                c_fc: linear(s.d_model, s.d_ff, true),
                c_proj: linear(s.d_ff, s.d_model, true),
                drop: drop(),
            },
        };
        let table = |n: usize| {
            EmbeddingConfig::new(n, s.d_model)
                .with_initializer(init.clone())
                .init(device)
        };
        Self {
            wte: table(s.n_tokens),
            wpe: table(s.n_positions),
            drop: drop(),
            h: (0..s.n_layers).map(|_| block()).collect(),
            ln_f: norm(),
        }
    }

    /// The same model with query/key/value biases, zeros where it had none: how GPT-2
    /// holds every such model.
    pub fn with_qkv_bias(mut self) -> Self {
        for block in &mut self.h {
            let c_attn = &mut block.attn.c_attn;
            if c_attn.bias.is_none() {
                let width = c_attn.weight.dims()[1];
                let device = c_attn.weight.device();
                c_attn.bias = Some(Param::from_tensor(Tensor::zeros([width], &device)));
            }
        }
        self
    }

    /// Rows of the token table: the ids the model reads and predicts.
    pub fn n_tokens(&self) -> usize {
        self.wte.weight.dims()[0]
    }

    /// Rows of the position table: the longest window the model reads.
    pub fn n_positions(&self) -> usize {
        self.wpe.weight.dims()[0]
    }

    /// # Shapes
    /// tokens [batch, len] (len <= n_positions) -> logits [batch, len, n_tokens]
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, len] = tokens.dims();
        let device = tokens.device();
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
        let mut x = self
            .drop
            .forward(self.wte.forward(tokens) + self.wpe.forward(positions));
        let mask = generate_autoregressive_mask(batch, len, &device);
        for block in &self.h {
            x = block.forward(x, mask.clone());
        }
        let x = self.ln_f.forward(x);
        // Tied output embedding: logits are the final states against every token's row.
        let table = self.wte.weight.val().transpose().unsqueeze_dim::<3>(0);
        x.matmul(table)
    }
}

impl Block {
    fn forward(&self, x: Tensor<3>, mask: Tensor<3, Bool>) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), mask);
        x.clone() + self.mlp.forward(self.ln_2.forward(x))
    }
}

impl Attention {
    /// # Shapes
    /// x [batch, len, d_model], mask [batch, len, len] (true = hidden) -> [batch, len, d_model]
    fn forward(&self, x: Tensor<3>, mask: Tensor<3, Bool>) -> Tensor<3> {
        let [batch, len, d_model] = x.dims();
        let heads = self.n_heads;
        let d_head = d_model / heads;
        let qkv = self.c_attn.forward(x);
        let split = |i: usize| {
            qkv.clone()
                .slice([0..batch, 0..len, i * d_model..(i + 1) * d_model])
                .reshape([batch, len, heads, d_head])
                .swap_dims(1, 2) // [batch, heads, len, d_head]
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let scores = q.matmul(k.transpose()) / (d_head as f64).sqrt();
        let hidden = mask.unsqueeze_dim::<4>(1).expand([batch, heads, len, len]);
        let weights = softmax(scores.mask_fill(hidden, -1.0e9), 3);
        let out = self
            .attn_drop
            .forward(weights)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, len, d_model]);
        self.resid_drop.forward(self.c_proj.forward(out))
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = gelu(self.c_fc.forward(x));
        self.drop.forward(self.c_proj.forward(x))
    }
}

/// Decoding re-reads the window at each token (no KV cache): at these sizes one forward
/// pass over 256 tokens takes milliseconds, and a window that slides past the position
/// table has to be re-read anyway.
impl Incremental for Gpt2 {
    type State = Tensor<2, Int>;

    fn prefill(&self, tokens: Tensor<2, Int>) -> (Tensor<2>, Self::State) {
        let window = crop(tokens, self.n_positions());
        (last_position(self.forward(window.clone())), window)
    }

    fn step(&self, next: Tensor<2, Int>, tokens: Self::State) -> (Tensor<2>, Self::State) {
        self.prefill(Tensor::cat(vec![tokens, next], 1))
    }
}

/// The last `limit` tokens of each row.
pub fn crop(tokens: Tensor<2, Int>, limit: usize) -> Tensor<2, Int> {
    let [batch, len] = tokens.dims();
    if len <= limit {
        return tokens;
    }
    tokens.slice([0..batch, len - limit..len])
}

//! Parameters by name: what transfer (`model.init_from`, `model.reset`), freezing
//! (`train.freeze`) and LoRA (`model.lora.targets`) address.
//!
//! A parameter's name is its module path without the architecture, e.g.
//! `blocks.layers.0.mha.query.weight`. A *part* names a group of them: any run of whole
//! path components (`head`, `layers.0`, `embed.tokens`), where `attn` stands for burn's
//! attention modules (`mha`, `self_attn`, `cross_attn`), `ff` for the feed-forward blocks
//! (`pwff`) and `embed` also for the encoder-decoder's two embeddings.

use super::Model;
use crate::error::UserError;
use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::prelude::*;
use std::collections::BTreeSet;

/// One float parameter of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// `embed.tokens.weight`: the module path without the architecture's variant.
    pub name: String,
    pub id: ParamId,
    pub shape: Vec<usize>,
    pub trainable: bool,
}

impl ParamInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Default)]
struct Lister {
    path: Vec<String>,
    found: Vec<ParamInfo>,
}

impl ModuleVisitor for Lister {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // The first component is the Model enum's variant (`Gpt`): the same for every
        // parameter of one model, and what tells architectures apart in a checkpoint.
        let name = self
            .path
            .iter()
            .skip(1)
            .cloned()
            .collect::<Vec<_>>()
            .join(".");
        self.found.push(ParamInfo {
            name,
            id: param.id,
            shape: param.shape().to_vec(),
            trainable: param.is_require_grad(),
        });
    }
}

/// Every float parameter of the model, in visiting order (LoRA factors included).
pub fn list(model: &Model) -> Vec<ParamInfo> {
    let mut lister = Lister::default();
    model.visit(&mut lister);
    lister.found
}

/// The values of the parameter called `name` (as [`list`] names them), for checks such as
/// "frozen weights did not move".
pub fn values(model: &Model, name: &str) -> Option<Vec<f32>> {
    struct Reader<'a> {
        path: Vec<String>,
        want: &'a str,
        found: Option<Vec<f32>>,
    }
    impl ModuleVisitor for Reader<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.path[1..].join(".") == self.want {
                // The stored value: a LoRA base without its adapter's delta.
                let data = param.base().into_data();
                self.found = Some(data.iter::<f32>().collect());
            }
        }
    }
    let mut reader = Reader {
        path: Vec::new(),
        want: name,
        found: None,
    };
    model.visit(&mut reader);
    reader.found
}

/// Parameter counts for `summary.json` and `compare`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub total: usize,
    pub trained: usize,
}

/// Total and trained parameter counts. Only meaningful on an autodiff device, where
/// `trainable` reflects what the optimiser will update.
pub fn counts(model: &Model) -> Counts {
    let params = list(model);
    Counts {
        total: params.iter().map(ParamInfo::numel).sum(),
        trained: params
            .iter()
            .filter(|p| p.trainable)
            .map(ParamInfo::numel)
            .sum(),
    }
}

/// Path components a part's component stands for.
fn aliases(component: &str) -> Vec<&str> {
    match component {
        "attn" => vec!["mha", "self_attn", "cross_attn"],
        "ff" => vec!["pwff"],
        "embed" => vec!["embed", "source_embed", "target_embed"],
        other => vec![other],
    }
}

/// Does `part` (e.g. `layers.0`, `attn`) name parameter `name`?
pub fn part_matches(part: &str, name: &str) -> bool {
    let want: Vec<Vec<&str>> = part.split('.').map(aliases).collect();
    let have: Vec<&str> = name.split('.').collect();
    have.windows(want.len())
        .any(|w| w.iter().zip(&want).all(|(h, ws)| ws.contains(h)))
}

/// Parts a user can name for this model: each top-level module, and each layer.
pub fn part_names(params: &[ParamInfo]) -> Vec<String> {
    let mut parts = BTreeSet::new();
    for p in params {
        let components: Vec<&str> = p.name.split('.').collect();
        parts.insert(components[0].to_string());
        for (i, c) in components.iter().enumerate() {
            if *c == "layers" {
                if let Some(index) = components.get(i + 1) {
                    parts.insert(format!("layers.{index}"));
                }
            }
            if ["mha", "self_attn", "cross_attn"].contains(c) {
                parts.insert("attn".into());
            }
            if *c == "pwff" {
                parts.insert("ff".into());
            }
        }
    }
    parts.into_iter().collect()
}

/// The parameters `parts` name; every part must name at least one (`key` is the spec key
/// the parts come from, for the error).
pub fn select<'a>(
    params: &'a [ParamInfo],
    parts: &[String],
    key: &str,
) -> Result<Vec<&'a ParamInfo>, UserError> {
    for part in parts {
        if !params.iter().any(|p| part_matches(part, &p.name)) {
            return Err(UserError::new(
                "",
                Some(key),
                format!(
                    "'{part}' names no parameter of this model; parts: {}",
                    part_names(params).join(", ")
                ),
            ));
        }
    }
    Ok(params
        .iter()
        .filter(|p| parts.iter().any(|part| part_matches(part, &p.name)))
        .collect())
}

/// A burn parameter group of exactly these parameters.
pub fn group(params: &[&ParamInfo]) -> ParamGroup {
    ParamGroup::from_ids(params.iter().map(|p| p.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Arch, Spec};

    fn names(arch: Arch) -> Vec<ParamInfo> {
        let mut spec = Spec::default();
        spec.model.arch = arch;
        spec.model.n_layers = 2;
        list(&Model::init(&spec, 10, &Device::flex()))
    }

    #[test]
    fn parts_match_whole_components_and_aliases() {
        assert!(part_matches("head", "head.weight"));
        assert!(part_matches("layers.0", "blocks.layers.0.mha.query.weight"));
        assert!(!part_matches(
            "layers.1",
            "blocks.layers.0.mha.query.weight"
        ));
        assert!(!part_matches(
            "layers.1",
            "blocks.layers.10.mha.query.weight"
        ));
        assert!(part_matches("attn", "decoder.layers.1.cross_attn.key.bias"));
        assert!(part_matches(
            "ff",
            "blocks.layers.0.pwff.linear_inner.weight"
        ));
        assert!(part_matches("embed", "source_embed.tokens.weight"));
        assert!(!part_matches("head", "heads.weight"));
    }

    #[test]
    fn every_listed_part_names_something_and_unknown_parts_are_refused() {
        for &arch in Arch::all() {
            let params = names(arch);
            assert!(params.iter().all(|p| !p.name.is_empty()));
            for part in part_names(&params) {
                assert!(
                    !select(&params, std::slice::from_ref(&part), "train.freeze")
                        .unwrap()
                        .is_empty()
                );
            }
            let e = select(&params, &["embd".into()], "train.freeze").unwrap_err();
            assert_eq!(e.key.as_deref(), Some("train.freeze"));
            assert!(
                e.message.contains("'embd'") && e.message.contains("head"),
                "{e}"
            );
        }
        let gpt = part_names(&names(Arch::Gpt));
        for part in [
            "embed", "blocks", "layers.0", "layers.1", "attn", "ff", "norm", "head",
        ] {
            assert!(gpt.contains(&part.to_string()), "{gpt:?}");
        }
    }
}

//! Property tests: no spec text, override or eval file, however broken, makes the parsers
//! panic; and every spec that validates builds a model that runs.

use bracket_closer::data::batcher::make_batch;
use bracket_closer::data::dataset;
use bracket_closer::model::Model;
use bracket_closer::spec::{self, Arch, Spec};
use burn::prelude::Device;
use proptest::prelude::*;

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z()【】{}<>\\[\\] ]{0,6}".prop_map(|s| format!("{s:?}")),
        prop::collection::vec("[(){}\\[\\]<>]{0,3}", 0..4).prop_map(|v| format!("{v:?}")),
        Just("{ int = [1, 2] }".to_string()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    let keys = spec::known_keys();
    prop_oneof![prop::sample::select(keys), "[a-z_]{1,8}\\.[a-z_]{1,8}",]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn random_toml_specs_never_panic(entries in prop::collection::vec((key(), value()), 0..8)) {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for (k, v) in &entries {
            let (section, field) = k.split_once('.').unwrap();
            text.push_str(&format!("[{section}]\n{field} = {v}\n"));
        }
        let path = dir.path().join("fuzz.toml");
        std::fs::write(&path, &text).unwrap();
        let _ = spec::load(path.to_str().unwrap(), &[]);
    }

    #[test]
    fn random_bytes_as_a_spec_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.toml");
        std::fs::write(&path, &bytes).unwrap();
        let _ = spec::load(path.to_str().unwrap(), &[]);
    }

    #[test]
    fn random_overrides_never_panic(k in key(), v in ".{0,12}") {
        let _ = spec::parse_override(&format!("{k}={v}"));
        let _ = spec::parse_override(&v);
    }

    #[test]
    fn random_eval_files_never_panic(lines in prop::collection::vec(
        prop_oneof![
            ".{0,40}",
            ("[(){}【】\\[<]{0,8}", "[(){}】\\])>]{0,8}")
                .prop_map(|(i, o)| format!("{{\"input\": {i:?}, \"output\": {o:?}}}")),
        ],
        0..8,
    )) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.jsonl");
        std::fs::write(&path, lines.join("\n")).unwrap();
        let vocab = dataset::vocab(&Spec::default());
        let _ = dataset::load_jsonl(&path, &vocab, false);
        let _ = dataset::load_jsonl(&path, &vocab, true);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, .. ProptestConfig::default() })]

    /// Layer and unit counts as a sweep would try them: every one validates and runs.
    /// The shapes are drawn valid (heads divide the width, enough positions), so every case
    /// counts; invalid ones are the validator's unit tests.
    #[test]
    fn every_valid_attention_shape_builds_and_runs(
        arch in prop::sample::select(Arch::all().to_vec()),
        n_heads in 1usize..5,
        head_dim in 1usize..6,
        d_ff in 1usize..16,
        layers in 1usize..3,
        max_len in 2usize..12,
        extra_positions in prop::option::of(0usize..8),
    ) {
        let d_model = n_heads * head_dim;
        let mut s = Spec::default();
        s.experiment.name = "fuzz".into();
        s.model.arch = arch;
        s.model.d_model = d_model;
        s.model.d_hidden = d_model;
        s.model.d_embed = d_model;
        s.model.n_heads = n_heads;
        s.model.d_ff = d_ff;
        s.model.n_layers = layers;
        s.model.n_enc_layers = layers;
        s.model.n_dec_layers = layers;
        s.data.max_len = max_len;
        s.model.max_positions = extra_positions.map_or(0, |extra| s.positions_needed() + extra);
        prop_assert!(spec::validate(&s).is_ok(), "{:?}", spec::validate(&s));
        let _turn = crate::common::burn_rng_lock();
        let device = Device::flex();
        let vocab = dataset::vocab(&s);
        let examples = dataset::fresh(&s, &vocab, 4, 1);
        let refs: Vec<_> = examples.iter().collect();
        let batch = make_batch(&refs, &vocab, bracket_closer::model::layout(&s, &vocab), &device, None);
        let model = Model::init(&s, vocab.size(), &device);
        let logits = model.forward(&batch);
        prop_assert_eq!(logits.dims()[0], 4);
        let prompts: Vec<Vec<u32>> = examples.iter().map(|e| e.prompt(&vocab)).collect();
        let decoded = model.generate(&prompts, s.max_answer_len(), &vocab, &device);
        prop_assert_eq!(decoded.len(), 4);
    }
}

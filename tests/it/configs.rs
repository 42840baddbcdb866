//! Every shipped config resolves, validates and fits its dataset.

use bracket_closer::data::dataset;
use bracket_closer::spec;

#[test]
fn every_config_in_configs_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut checked = 0;
    let entries = std::fs::read_dir(&dir)
        .unwrap()
        .chain(std::fs::read_dir(dir.join("techniques")).unwrap())
        .chain(std::fs::read_dir(dir.join("text")).unwrap())
        .chain(std::fs::read_dir(dir.join("generalise")).unwrap());
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let arg = path.to_str().unwrap();
            let resolved = spec::load(arg, &[]).unwrap_or_else(|e| panic!("{e}"));
            dataset::check_capacity(&resolved.spec, arg).unwrap_or_else(|e| panic!("{e}"));
            let stem = path.file_stem().unwrap().to_str().unwrap();
            assert_eq!(resolved.spec.experiment.name, stem);
            checked += 1;
        }
    }
    assert!(checked >= 11, "only {checked} configs");
}

//! Replays the fuzz corpus on stable Rust: every file under `fuzz/seeds/<target>/` and
//! `fuzz/regressions/<target>/` through that target's check, the same code the cargo-fuzz
//! targets run. A crash the fuzzer found stays fixed once its input is in `regressions/`.

use socbridge_fuzz_checks::TARGETS;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// The folders of `dir`, or with `ext` the stems of its files with that extension.
fn names_in(dir: &Path, ext: Option<&str>) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("a readable directory entry").path())
                .filter(|p| match ext {
                    None => p.is_dir(),
                    Some(ext) => p.extension().is_some_and(|e| e == ext),
                })
                .filter_map(|p| Some(p.file_stem()?.to_str()?.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_seed_and_regression_passes_its_target_check() {
    let fuzz = fuzz_dir();
    let mut report = Vec::new();
    for target in TARGETS {
        let seeds = files(&fuzz.join("seeds").join(target.name));
        let regressions = files(&fuzz.join("regressions").join(target.name));
        assert!(
            !seeds.is_empty(),
            "fuzz/seeds/{}/ has no seed: every target starts from real inputs",
            target.name
        );
        for file in seeds.iter().chain(&regressions) {
            let data = std::fs::read(file).expect("a readable corpus file");
            let outcome = std::panic::catch_unwind(|| (target.check)(&data));
            assert!(
                outcome.is_ok(),
                "{} panicked on {}",
                target.name,
                file.display()
            );
        }
        report.push(format!(
            "{}: {} seeds, {} regressions",
            target.name,
            seeds.len(),
            regressions.len()
        ));
    }
    println!("{}", report.join("\n"));
}

#[test]
fn the_fuzz_targets_and_the_corpus_folders_are_the_listed_targets() {
    let fuzz = fuzz_dir();
    let listed: BTreeSet<String> = TARGETS.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(
        names_in(&fuzz.join("fuzz_targets"), Some("rs")),
        listed,
        "fuzz/fuzz_targets/ and socbridge_fuzz_checks::TARGETS differ"
    );
    for folder in ["seeds", "regressions"] {
        let unknown: Vec<String> = names_in(&fuzz.join(folder), None)
            .difference(&listed)
            .cloned()
            .collect();
        assert!(
            unknown.is_empty(),
            "fuzz/{folder}/ has folders of no target: {unknown:?}"
        );
    }
}

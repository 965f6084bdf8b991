//! SAELens itself opens what saelab saves, for every SAE architecture and
//! for transcoders with and without a skip connection, and encodes and
//! decodes as saelab does (tests/reference/saelens_load.py,
//! run with the SAELens venv that `make test` makes: setup/fetch-saelens.sh).
use crate::support::eval;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python with SAELens: `$SAELAB_SAELENS_PYTHON`, or the venv
/// setup/fetch-saelens.sh makes in the cache.
fn saelens_python() -> PathBuf {
    match std::env::var_os("SAELAB_SAELENS_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => saelab::core::model::cache_dir().join("saelens-venv/bin/python"),
    }
}

#[test]
fn saelens_opens_every_architecture_saelab_saves_and_agrees_on_the_codes() {
    tch::set_num_threads(1);
    let python = saelens_python();
    let ready = Command::new(&python)
        .args(["-c", "import sae_lens"])
        .status();
    assert!(
        ready.is_ok_and(|s| s.success()),
        "{} cannot import sae_lens: run setup/fetch-saelens.sh (make test does), \
         or point SAELAB_SAELENS_PYTHON at a Python with sae-lens",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let kinds = ["relu", "topk", "jumprelu", "batchtopk", "matryoshka"];
    let _ = eval(&format!(
        r#"
        seed(3);
        let x = randn([256, 16]) + 0.5;
        for kind in {kinds:?} {{
            let s = sae(#{{d_in: 16, n_features: 64, kind: kind, k: 3, matryoshka_widths: [8, 32]}});
            s.train(x, #{{steps: 50, batch_size: 64, lr: 1e-3, progress: false}});
            let to = "{root}/" + kind;
            s.save(to);
            let f = s.encode(x);
            save_tensors(to + "/check.safetensors", #{{x: x, f: f, x_hat: s.decode(f)}});
        }}
        let y = x.matmul(randn([16, 12])) * 0.3;
        for skip in [false, true] {{
            let t = transcoder(#{{d_in: 16, d_out: 12, n_features: 64, skip: skip,
                                 hook_name: "blocks.5.ln2.hook_normalized", hook_name_out: "blocks.5.hook_mlp_out"}});
            t.train(cat([x, y], 1), #{{steps: 50, batch_size: 64, lr: 1e-3, progress: false}});
            let to = "{root}/transcoder-skip-" + skip;
            t.save(to);
            let out = t.forward(cat([x, y], 1));
            save_tensors(to + "/check.safetensors", #{{x: x, f: t.encode(x), x_hat: out.x_hat}});
        }}
        "#,
        root = dir.path().display()
    ));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/saelens_load.py");
    let names = kinds.iter().map(|kind| kind.to_string()).chain([
        "transcoder-skip-false".into(),
        "transcoder-skip-true".into(),
    ]);
    let out = Command::new(&python)
        .arg(script)
        .args(names.map(|name| dir.path().join(name)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kinds = kinds
        .iter()
        .copied()
        .chain(["transcoder-skip-false", "transcoder-skip-true"]);
    for (kind, class) in kinds.zip([
        "StandardSAE",
        "TopKSAE",
        "JumpReLUSAE",
        "JumpReLUSAE",
        "JumpReLUSAE",
        ": Transcoder (",
        "SkipTranscoder",
    ]) {
        let line = stdout
            .lines()
            .find(|line| line.contains(&format!("/{kind}:")))
            .unwrap_or_else(|| panic!("no line for {kind}: {stdout}"));
        assert!(line.contains(class), "{line}");
    }
}

//! Transcoders and crosscoders trained on data with known ground truth,
//! saved and loaded.
use super::*;
use crate::precision::Precision;
use crate::sae::{checkpoint, metrics, synthetic, trainer, ArchitectureConfig, TensorSource};
use tch::{Device, Kind};

fn options(value: Value) -> OptionMap {
    value.as_object().cloned().unwrap_or_default()
}

fn train_config(steps: u64) -> trainer::TrainConfig {
    trainer::TrainConfig {
        steps,
        batch_size: 256,
        lr: 5e-3,
        show_progress: false,
        ..Default::default()
    }
}

/// Rows [x | y] where x = f·D_in and y = f·D_out for sparse features f: the
/// toy superposition data in d_in + d_out dimensions, split. The output is
/// `output_scale` times larger, so only per-site normalisation serves both.
fn transcoder_rows(d_in: i64, d_out: i64, output_scale: f64) -> (tch::Tensor, tch::Tensor) {
    let toy = synthetic::superposition(96, d_in + d_out, 3.0, 16384).unwrap();
    let x = toy.activations.narrow(1, 0, d_in);
    let y = toy.activations.narrow(1, d_in, d_out) * output_scale;
    let output_directions = toy.directions.narrow(1, d_in, d_out);
    (tch::Tensor::cat(&[x, y], 1), output_directions)
}

#[test]
fn a_transcoder_recovers_the_map_from_input_features_to_output_directions() {
    crate::rng::seed(31);
    let (d_in, d_out) = (24, 16);
    let (rows, truth) = transcoder_rows(d_in, d_out, 40.0);
    let cfg = transcoder_config(&options(json!({
        "d_in": d_in, "d_out": d_out, "n_features": 384, "kind": "topk", "k": 3
    })))
    .unwrap();
    let mut sae = Sae::new(cfg).unwrap();
    let mut source = TensorSource::new(&rows, 3, true)
        .unwrap()
        .with_sites(&[d_in, d_out])
        .unwrap();
    let report = trainer::train(&mut sae, &mut source, train_config(600)).unwrap();
    assert_eq!(report.site_scales.len(), 2);
    assert!(
        report.site_scales[0] > 20.0 * report.site_scales[1],
        "each site has its own scale: {:?}",
        report.site_scales
    );
    let first = report.history.first().unwrap().loss;
    assert!(
        report.last.loss < first / 2.0,
        "{first} → {}",
        report.last.loss
    );
    let recovery =
        synthetic::mean_max_cosine_similarity(&truth, sae.weights.w_dec.inner()).unwrap();
    assert!(recovery > 0.9, "MMCS of the output directions {recovery}");
    // The scales are folded in: raw rows in, raw outputs predicted.
    let mut all = TensorSource::new(&rows, 0, false).unwrap();
    let eval = metrics::evaluate(&sae, &mut all, 0, 4096, Precision::F32).unwrap();
    assert!(eval.explained_variance > 0.6, "{}", eval.explained_variance);
    assert!(eval.l0 <= 3.0 + 1e-6, "TopK's L0 {}", eval.l0);
}

#[test]
fn a_skip_transcoder_learns_a_linear_map_through_w_skip() {
    crate::rng::seed(32);
    // y = A·x exactly: the skip connection alone can explain it.
    let x = tch::Tensor::randn([4096, 8], (Kind::Float, Device::Cpu));
    let a = tch::Tensor::randn([6, 8], (Kind::Float, Device::Cpu));
    let rows = tch::Tensor::cat(&[x.shallow_clone(), x.matmul(&a.tr())], 1);
    let cfg = transcoder_config(&options(json!({
        "d_in": 8, "d_out": 6, "n_features": 4, "kind": "topk", "k": 1, "skip": true
    })))
    .unwrap();
    let mut sae = Sae::new(cfg).unwrap();
    let mut source = TensorSource::new(&rows, 1, true)
        .unwrap()
        .with_sites(&[8, 6])
        .unwrap();
    let cfg = trainer::TrainConfig {
        lr: 3e-2,
        ..train_config(400)
    };
    trainer::train(&mut sae, &mut source, cfg).unwrap();
    // The skip connection alone carries the map: ‖x·W_skipᵀ − y‖² is a
    // small fraction of ‖y‖² (the features may take a little of it).
    let w_skip = sae.weights.w_skip.as_ref().unwrap().inner().detach();
    let y = x.matmul(&a.tr());
    let residual = (x.matmul(&w_skip.tr()) - &y).square().sum(Kind::Double);
    let fraction = residual.double_value(&[]) / y.square().sum(Kind::Double).double_value(&[]);
    assert!(
        fraction < 0.05,
        "W_skip leaves {fraction} of the output unexplained"
    );
}

#[test]
fn a_crosscoder_weights_its_penalty_by_the_sum_of_its_site_norms() {
    let mut cfg =
        crosscoder_config(&options(json!({"site_widths": [2, 2], "n_features": 1}))).unwrap();
    cfg.architecture = ArchitectureConfig::new("relu", 4, 1).unwrap();
    let f32_tensor = |v: &[f32], shape: &[i64]| tch::Tensor::from_slice(v).reshape(shape);
    let sae = Sae::from_parts(
        cfg,
        f32_tensor(&[1.0, 0.0, 0.0, 0.0], &[1, 4]),
        f32_tensor(&[0.0], &[1]),
        f32_tensor(&[3.0, 4.0, 0.0, 1.0], &[1, 4]), // site norms 5 and 1
        f32_tensor(&[0.0; 4], &[4]),
        None,
    )
    .unwrap();
    let norms = sae.weights.decoder_norms().unwrap();
    assert!((norms.double_value(&[0]) - 6.0).abs() < 1e-6);
    let x = f32_tensor(&[2.0, 0.0, 0.0, 0.0], &[1, 4]);
    let out = sae.forward(&x, &Default::default()).unwrap();
    // f = 2, penalty = f · (5 + 1).
    assert!((out.penalty.double_value(&[]) - 12.0).abs() < 1e-5);
}

#[test]
fn a_crosscoder_reconstructs_every_site_and_reports_each() {
    crate::rng::seed(33);
    let toy = synthetic::superposition(64, 32, 3.0, 8192).unwrap();
    // The second site is 30 times larger than the first.
    let scale = tch::Tensor::cat(
        &[
            tch::Tensor::ones([16], (Kind::Float, Device::Cpu)),
            tch::Tensor::full([16], 30.0, (Kind::Float, Device::Cpu)),
        ],
        0,
    );
    let rows = &toy.activations * &scale;
    let cfg = crosscoder_config(&options(json!({
        "site_widths": [16, 16], "n_features": 256, "kind": "topk", "k": 3
    })))
    .unwrap();
    let mut sae = Sae::new(cfg).unwrap();
    let mut source = TensorSource::new(&rows, 2, true)
        .unwrap()
        .with_sites(&[16, 16])
        .unwrap();
    trainer::train(&mut sae, &mut source, train_config(500)).unwrap();
    let mut all = TensorSource::new(&rows, 0, false).unwrap();
    let eval = metrics::evaluate(&sae, &mut all, 0, 4096, Precision::F32).unwrap();
    assert_eq!(eval.site_explained_variance.len(), 2);
    for ev in &eval.site_explained_variance {
        assert!(
            *ev > 0.8,
            "per-site explained variance {:?}",
            eval.site_explained_variance
        );
    }
}

#[test]
fn transcoders_and_crosscoders_save_and_load_exactly() {
    crate::rng::seed(34);
    let dir = tempfile::tempdir().unwrap();
    let transcoder = transcoder_config(&options(json!({
        "d_in": 5, "d_out": 3, "n_features": 8, "kind": "jumprelu", "skip": true,
        "hook_name": "blocks.2.ln2.hook_normalized"
    })))
    .unwrap();
    let mut crosscoder = crosscoder_config(&options(json!({
        "site_widths": [3, 3], "n_features": 8, "kind": "topk", "k": 2
    })))
    .unwrap();
    crosscoder.metadata.hook_names = vec![
        "blocks.1.hook_resid_post".into(),
        "blocks.3.hook_resid_post".into(),
    ];
    for (name, cfg, width, saelens) in [
        ("transcoder", transcoder, 8, "jumprelu_skip_transcoder"),
        ("crosscoder", crosscoder, 6, "topk_crosscoder"),
    ] {
        let mut sae = Sae::new(cfg).unwrap();
        if let Some(w) = &sae.weights.w_skip {
            w.inner()
                .shallow_clone()
                .detach_()
                .copy_(&tch::Tensor::randn_like(w.inner()));
        }
        sae.cfg.metadata.hook_name_out =
            (name == "transcoder").then(|| "blocks.2.hook_mlp_out".into());
        let path = dir.path().join(name);
        checkpoint::save(&sae, &path, 1.0, None).unwrap();
        let cfg_json: Value =
            serde_json::from_str(&std::fs::read_to_string(path.join("cfg.json")).unwrap()).unwrap();
        assert_eq!(cfg_json["architecture"], saelens);
        let loaded = checkpoint::load(&path, Device::Cpu).unwrap();
        assert_eq!(loaded.cfg.layout, sae.cfg.layout);
        assert_eq!(loaded.cfg.metadata, sae.cfg.metadata);
        let rows = tch::Tensor::randn([7, width], (Kind::Float, Device::Cpu));
        let before = sae.forward(&rows, &Default::default()).unwrap().x_hat;
        let after = loaded.forward(&rows, &Default::default()).unwrap().x_hat;
        assert!(before.equal(&after), "{name}");
        assert_eq!(splice_sites(&loaded).unwrap(), splice_sites(&sae).unwrap());
    }
}

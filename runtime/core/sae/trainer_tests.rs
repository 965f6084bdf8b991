//! The training loop's guarantees: schedules, exact repeats with a seed,
//! exact resumption from a checkpoint, clear failures.
use super::*;
use crate::sae::{synthetic, ArchitectureConfig, SaeConfig, TensorSource};

fn quick(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 64,
        lr: 1e-3,
        log_every: 5,
        show_progress: false,
        ..Default::default()
    }
}

fn data() -> tch::Tensor {
    crate::rng::seed(11);
    synthetic::superposition(32, 8, 3.0, 512)
        .unwrap()
        .activations
}

fn fresh(arch: &str) -> Sae {
    crate::rng::seed(12);
    let mut cfg = SaeConfig::new(arch, 8, 16).unwrap();
    match &mut cfg.architecture {
        ArchitectureConfig::TopK(topk) => topk.k = 4,
        ArchitectureConfig::BatchTopK(batch) => batch.k = 4.0,
        _ => {}
    }
    Sae::new(cfg).unwrap()
}

/// Copies of one initial SAE: libtorch's generator is global and other tests
/// draw from it concurrently, so reseeding would not give identical starts.
fn copies(arch: &str, n: usize) -> Vec<Sae> {
    let template = fresh(arch);
    (0..n).map(|_| template.duplicate().unwrap()).collect()
}

fn weights_equal(a: &Sae, b: &Sae) -> bool {
    a.weights
        .named()
        .iter()
        .zip(b.weights.named().iter())
        .all(|((_, x), (_, y))| x.inner().equal(y.inner()))
}

#[test]
fn a_seeded_cpu_run_repeats_exactly() {
    let x = data();
    let run = |mut sae: Sae| {
        let mut source = TensorSource::new(&x, 3, true).unwrap();
        let report = train(
            &mut sae,
            &mut source,
            TrainConfig {
                resample_every: 10,
                ..quick(30)
            },
        )
        .unwrap();
        (sae, report)
    };
    for arch in ["relu", "topk"] {
        let [first, second]: [Sae; 2] = copies(arch, 2).try_into().ok().unwrap();
        let (a, report_a) = run(first);
        let (b, report_b) = run(second);
        assert!(weights_equal(&a, &b), "{arch}: weights differ");
        let losses = |r: &TrainReport| r.history.iter().map(|h| h.loss).collect::<Vec<_>>();
        assert_eq!(losses(&report_a), losses(&report_b));
        assert_eq!(report_a.history.len(), 6);
        assert!(
            report_a.last.loss < report_a.history[0].loss,
            "{arch}: the loss did not fall"
        );
    }
}

#[test]
fn a_killed_run_resumes_from_its_checkpoint_exactly() {
    let x = data();
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg_with_dir(dir.path());
    let [mut straight, mut killed, mut resumed]: [Sae; 3] =
        copies("relu", 3).try_into().ok().unwrap();
    let mut source = TensorSource::new(&x, 4, true).unwrap();
    let report = train(
        &mut straight,
        &mut source,
        TrainConfig {
            checkpoint_dir: None,
            ..cfg.clone()
        },
    )
    .unwrap();

    let mut source = TensorSource::new(&x, 4, true).unwrap();
    let mut trainer = Trainer::start(&mut killed, &mut source, cfg.clone()).unwrap();
    trainer.run_until(17).unwrap();
    drop(trainer); // steps 11..17 are lost; step 10 is on disk

    let mut source = TensorSource::new(&x, 4, true).unwrap();
    let resumed_report = train(&mut resumed, &mut source, cfg).unwrap();
    assert_eq!(resumed_report.resumed_from, Some(10));
    assert!(
        weights_equal(&straight, &resumed),
        "resumed weights differ from the straight run"
    );
    let losses = |r: &TrainReport| {
        r.history
            .iter()
            .map(|h| (h.step, h.loss))
            .collect::<Vec<_>>()
    };
    assert_eq!(losses(&report), losses(&resumed_report));
    let csv = std::fs::read_to_string(dir.path().join("run/history.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 6);
    // Another seed would continue with another data order: refused.
    let mut other = fresh("relu");
    let mut source = TensorSource::new(&x, 5, true).unwrap();
    let err = train(
        &mut other,
        &mut source,
        TrainConfig {
            seed: 5,
            ..cfg_with_dir(dir.path())
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("seed"), "{err}");
}

#[test]
fn a_resumed_batchtopk_run_keeps_its_threshold_estimate() {
    let x = data();
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg_with_dir(dir.path());
    let [mut straight, mut killed, mut resumed]: [Sae; 3] =
        copies("batchtopk", 3).try_into().ok().unwrap();
    let mut source = TensorSource::new(&x, 4, true).unwrap();
    let straight_cfg = TrainConfig {
        checkpoint_dir: None,
        ..cfg.clone()
    };
    train(&mut straight, &mut source, straight_cfg).unwrap();
    let mut source = TensorSource::new(&x, 4, true).unwrap();
    let mut trainer = Trainer::start(&mut killed, &mut source, cfg.clone()).unwrap();
    trainer.run_until(17).unwrap();
    drop(trainer);
    let mut source = TensorSource::new(&x, 4, true).unwrap();
    train(&mut resumed, &mut source, cfg).unwrap();
    let threshold = |s: &Sae| s.architecture().inference_threshold().unwrap();
    assert!(threshold(&straight) > 0.0);
    assert_eq!(threshold(&straight), threshold(&resumed));
    assert!(weights_equal(&straight, &resumed));
}

fn cfg_with_dir(dir: &std::path::Path) -> TrainConfig {
    TrainConfig {
        checkpoint_dir: Some(dir.join("run")),
        checkpoint_every: 10,
        resample_every: 8,
        ..quick(30)
    }
}

/// Serves good batches, then NaN from step `bad_from` on.
struct PoisonedSource {
    inner: TensorSource,
    batches: u64,
    bad_from: u64,
}

impl ActivationSource for PoisonedSource {
    fn dim(&self) -> i64 {
        self.inner.dim()
    }
    fn next_batch(&mut self, n: i64) -> Result<tch::Tensor> {
        let mut batch = self.inner.next_batch(n)?;
        self.batches += 1;
        if self.batches > self.bad_from {
            return Ok(batch.f_fill_(f64::NAN)?);
        }
        Ok(batch)
    }
    fn scale(&mut self) -> Result<f64> {
        Ok(1.0)
    }
    fn position(&self) -> u64 {
        self.inner.position()
    }
    fn describe(&self) -> String {
        "poisoned".into()
    }
}

#[test]
fn a_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint() {
    let x = data();
    let dir = tempfile::tempdir().unwrap();
    let mut sae = fresh("relu");
    let mut source = PoisonedSource {
        inner: TensorSource::new(&x, 0, true).unwrap(),
        batches: 0,
        bad_from: 3,
    };
    let cfg = TrainConfig {
        checkpoint_dir: Some(dir.path().to_path_buf()),
        checkpoint_every: 1,
        dead_feature_remedy: Some(DeadFeatureRemedy::None),
        ..quick(20)
    };
    let err = train(&mut sae, &mut source, cfg).err().unwrap().to_string();
    // Steps 0, 1, 2 get good batches; step 3 gets NaN.
    assert!(err.contains("NaN") && err.contains("step 3"), "{err}");
    assert!(err.contains("step-00000003"), "{err}");
    let kept = crate::sae::checkpoint::latest_checkpoint(dir.path())
        .unwrap()
        .unwrap();
    let loaded = crate::sae::checkpoint::load(&kept, tch::Device::Cpu).unwrap();
    assert!(
        loaded
            .weights
            .w_dec
            .inner()
            .isfinite()
            .all()
            .int64_value(&[])
            == 1
    );
    assert!(sae.weights.w_enc.inner().isfinite().all().int64_value(&[]) == 1);
}

#[test]
fn activations_of_the_wrong_width_are_refused() {
    let mut sae = fresh("relu");
    let x = tch::Tensor::zeros([10, 5], (Kind::Float, tch::Device::Cpu));
    let mut source = TensorSource::new(&x, 0, true).unwrap();
    let err = train(&mut sae, &mut source, quick(5))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("width 5") && err.contains("d_in is 8"),
        "{err}"
    );
}

#[test]
fn auxk_is_only_for_topk() {
    let mut sae = fresh("relu");
    let x = data();
    let mut source = TensorSource::new(&x, 0, true).unwrap();
    let cfg = TrainConfig {
        dead_feature_remedy: Some(DeadFeatureRemedy::AuxK),
        ..quick(5)
    };
    assert!(train(&mut sae, &mut source, cfg)
        .err()
        .unwrap()
        .to_string()
        .contains("AuxK needs a TopK"));
}

//! Properties of a fresh SAE and of the shared forward pass.
use super::*;

#[test]
fn initialisation_follows_the_april_update() {
    crate::rng::seed(0);
    let sae = Sae::new(SaeConfig::new("relu", 16, 32).unwrap()).unwrap();
    let w = &sae.weights;
    let norms = Vec::<f64>::try_from(w.decoder_norms().unwrap().to_kind(Kind::Double)).unwrap();
    assert!(norms.iter().all(|n| (n - 0.1).abs() < 1e-6), "{norms:?}");
    assert!(
        w.w_enc.inner().equal(w.w_dec.inner()),
        "W_enc must start as W_decᵀ"
    );
    assert_eq!(
        w.b_enc.inner().abs().sum(Kind::Float).double_value(&[]),
        0.0
    );
    assert_eq!(
        w.b_dec.inner().abs().sum(Kind::Float).double_value(&[]),
        0.0
    );
    assert!(sae.fresh);
    assert_eq!(sae.architecture().sparsity_coefficient(), 5.0);
}

#[test]
fn a_seed_repeats_the_initialisation() {
    crate::rng::seed(9);
    let a = Sae::new(SaeConfig::new("topk", 8, 16).unwrap()).unwrap();
    crate::rng::seed(9);
    let b = Sae::new(SaeConfig::new("topk", 8, 16).unwrap()).unwrap();
    assert!(a.weights.w_dec.inner().equal(b.weights.w_dec.inner()));
}

#[test]
fn inputs_of_the_wrong_width_are_rejected_with_both_widths() {
    let sae = Sae::new(SaeConfig::new("relu", 16, 32).unwrap()).unwrap();
    let x = tch::Tensor::zeros([4, 12], (Kind::Float, Device::Cpu));
    let err = sae
        .forward(&x, &LossOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("d_in = 16") && err.contains("[4, 12]"),
        "{err}"
    );
    let f = tch::Tensor::zeros([4, 31], (Kind::Float, Device::Cpu));
    assert!(sae.decode(&f).is_err());
}

#[test]
fn the_registry_knows_saelens_names() {
    let name = |n: &str| ArchitectureConfig::new(n, 8, 16).map(|a| a.name());
    assert_eq!(name("standard").unwrap(), "relu");
    assert_eq!(name("topk").unwrap(), "topk");
    let err = name("gated").unwrap_err().to_string();
    assert!(err.contains("relu, topk, jumprelu"), "{err}");
}

#[test]
fn folding_and_unfolding_the_scale_round_trips() {
    crate::rng::seed(4);
    let sae = Sae::new(SaeConfig::new("relu", 8, 16).unwrap()).unwrap();
    let before = deep_copy(sae.weights.w_dec.inner()).unwrap();
    sae.fold_input_scale(4.0).unwrap();
    sae.fold_input_scale(0.25).unwrap();
    assert!(sae.weights.w_dec.inner().equal(&before));
}

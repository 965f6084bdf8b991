//! The streaming records against the same quantities computed densely.
use super::records::*;
use crate::activations::Store;
use crate::sae::{Sae, SaeConfig};
use tch::{Device, Kind, Tensor};

fn setup(architecture: &str) -> (Sae, Store, Tensor) {
    crate::rng::seed(7);
    let sae = Sae::new(SaeConfig::new(architecture, 6, 10).unwrap()).unwrap();
    let x = Tensor::randn([53, 6], (Kind::Float, Device::Cpu));
    let store = Store::from_tensor(&x).unwrap();
    let f = sae.encode(&x).unwrap();
    (sae, store, f)
}

fn options(batch_size: usize) -> RecordOptions {
    RecordOptions {
        top_k: 3,
        samples_per_bin: 2,
        batch_size,
        max_rows: None,
        show_progress: false,
        precision: crate::precision::Precision::F32,
    }
}

/// Encoding in batches of another size changes the last bits of a matmul.
fn assert_close(got: &[f32], expected: &[f32], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}");
    for (g, e) in got.iter().zip(expected) {
        assert!(
            (g - e).abs() <= 1e-5 * e.abs().max(1.0),
            "{what}: {got:?} vs {expected:?}"
        );
    }
}

#[test]
fn streamed_top_activations_counts_and_histograms_match_the_dense_codes() {
    for architecture in ["relu", "topk"] {
        let (sae, store, f) = setup(architecture);
        let records = compute_records(&sae, &store, &options(7)).unwrap();
        let dense: Vec<Vec<f32>> = Vec::try_from(&f).unwrap();
        for feature in 0..10 {
            let column: Vec<(usize, f32)> = dense
                .iter()
                .map(|r| r[feature])
                .enumerate()
                .filter(|(_, v)| *v > 0.0)
                .collect();
            let mut sorted = column.clone();
            sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
            let top = records.top(feature as i64, 3).unwrap();
            let expected: Vec<f32> = sorted.iter().take(3).map(|(_, v)| *v).collect();
            let got: Vec<f32> = top.iter().map(|e| e.activation).collect();
            assert_close(
                &got,
                &expected,
                &format!("{architecture} feature {feature}"),
            );
            for e in &top {
                assert_close(&[dense[e.row][feature]], &[e.activation], "row");
            }
            let density = records.density(feature as i64).unwrap();
            assert_eq!(density, column.len() as f64 / 53.0);
            let histogram = records.histogram_of(feature as i64).unwrap();
            assert_eq!(histogram.iter().sum::<i64>(), column.len() as i64);
        }
    }
}

#[test]
fn quantile_examples_are_real_rows_inside_their_quantile() {
    let (sae, store, f) = setup("relu");
    let records = compute_records(&sae, &store, &options(11)).unwrap();
    let dense: Vec<Vec<f32>> = Vec::try_from(&f).unwrap();
    for feature in 0..10 {
        let groups = records.quantile_samples(feature, 3, 4, 0).unwrap();
        let mut previous_high = 0.0;
        for group in &groups {
            assert!(group.low >= previous_high * 0.999 && group.low < group.high);
            previous_high = group.high;
            assert!(!group.examples.is_empty());
            for e in &group.examples {
                assert_close(&[dense[e.row][feature as usize]], &[e.activation], "row");
                let a = e.activation as f64;
                let edge = |v: f64| v >= bin_edge(0) && v < bin_edge(BINS);
                if edge(a) {
                    assert!(
                        a >= group.low * 0.999 && a < group.high * 1.001,
                        "{a} not in {group:?}"
                    );
                }
            }
        }
        assert_eq!(groups, records.quantile_samples(feature, 3, 4, 0).unwrap());
    }
}

#[test]
fn records_round_trip_through_disk_and_refuse_another_sae() {
    let (sae, store, _) = setup("topk");
    let records = compute_records(&sae, &store, &options(16)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    records.save(dir.path()).unwrap();
    let loaded = FeatureRecords::load(dir.path()).unwrap();
    assert_eq!(loaded.meta, records.meta);
    assert_eq!(loaded.top(4, 3).unwrap(), records.top(4, 3).unwrap());
    loaded.check_sae(&sae).unwrap();
    let other = Sae::new(SaeConfig::new("topk", 6, 10).unwrap()).unwrap();
    let err = loaded.check_sae(&other).unwrap_err().to_string();
    assert!(err.contains("another SAE"), "{err}");
    assert!(loaded
        .top(10, 1)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    std::fs::write(dir.path().join("records.safetensors"), b"garbage").unwrap();
    assert!(FeatureRecords::load(dir.path()).is_err());
}

#[test]
fn a_store_of_another_width_is_refused() {
    let (sae, _, _) = setup("relu");
    let store = Store::from_tensor(&Tensor::randn([5, 4], (Kind::Float, Device::Cpu))).unwrap();
    let err = compute_records(&sae, &store, &options(4))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("width 4"), "{err}");
}

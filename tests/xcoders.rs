//! Transcoders and crosscoders on SmolLM2: the MLP's input and output
//! sites, stores of several sites per row, and a transcoder and a
//! crosscoder trained, spliced into the model (CE and KL), saved and
//! loaded. Skipped with a note when the model is not in the cache.
use crate::model::with_model;
use saelab::core::model::{Edit, Hooks, Logits, Site};

const TEXT: &str = "The Golden Gate Bridge is a suspension bridge spanning the Golden Gate, the strait connecting San Francisco Bay and the Pacific Ocean.";

fn max_difference(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn mlp_out_is_what_the_mlp_adds_and_mlp_in_what_it_reads() {
    with_model(|model| {
        let layer = 5;
        let ids = vec![model.tokens_to_run(TEXT).unwrap()];
        let sites = [
            Site::mlp_in(layer),
            Site::mlp_out(layer),
            Site::resid_post(layer),
        ];
        let out = model
            .run(&ids, &Hooks::reading(&sites), Logits::All)
            .unwrap();
        let [mlp_in, mlp_out, resid_post] = &out.activations[..] else {
            panic!("three reads")
        };
        // With the MLP's output zeroed, resid_post is the residual between attention and MLP.
        let zeroed = Hooks::reading(&[Site::resid_post(layer)])
            .edit(Site::mlp_out(layer), Edit::Replace(mlp_out.zeros_like()));
        let resid_mid =
            model.run(&ids, &zeroed, Logits::Skip).unwrap().activations[0].shallow_clone();
        assert!(max_difference(&(resid_post - mlp_out), &resid_mid) < 1e-4);
        // mlp_in is that residual after the block's second RMSNorm, gain included.
        let gain = model.weight(&format!("blk.{layer}.ffn_norm")).unwrap();
        let eps = model.llama.config.rms_eps;
        let normalised = resid_mid.rms_norm([gain.size()[0]], Some(&gain), eps);
        assert!(max_difference(&normalised, mlp_in) < 1e-4);
        // Replacing mlp_out by itself changes nothing.
        let same = Hooks::default().edit(Site::mlp_out(layer), Edit::Replace(mlp_out.copy()));
        let logits = model.run(&ids, &same, Logits::All).unwrap().logits.unwrap();
        assert_eq!(max_difference(&logits, out.logits.as_ref().unwrap()), 0.0);
    });
}

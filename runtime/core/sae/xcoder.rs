//! Transcoders and crosscoders as scripts and stores describe them: their
//! configs from options or from a multi-site store's sites, the sites they
//! read and write in the model, and the replacement that splices them in
//! (a transcoder in place of the MLP; a crosscoder at all its sites at once).
//! The layout itself — widths, decoder blocks, cfg.json names — is
//! `layout.rs`; training and evaluation are the SAE's own.
use super::metrics::CeLossRecovered;
use super::{Layout, Sae, SaeConfig};
use crate::activations::SiteInfo;
use crate::model::{Site, SitesReplacement, SpliceLoss};
use crate::options::OptionMap;
use crate::{Error, Result};
use serde_json::{json, Value};

/// A transcoder from `sae(...)`'s options plus `d_out` (default: d_in) and
/// `skip` (a learned W_skip, default false).
pub fn transcoder_config(options: &OptionMap) -> Result<SaeConfig> {
    let mut shared = options.clone();
    let d_out = take_int(&mut shared, "transcoder", "d_out")?;
    let skip = match shared.remove("skip") {
        None => false,
        Some(Value::Bool(skip)) => skip,
        Some(other) => {
            return Err(Error::invalid(format!(
                "transcoder: option 'skip' must be true or false, got {other}"
            )))
        }
    };
    let apply_b_dec = shared.get("apply_b_dec_to_input").is_some();
    let mut cfg = SaeConfig::from_options(&shared)?;
    if !apply_b_dec {
        // b_dec lives in the output space; SAELens refuses it too.
        cfg.apply_b_dec_to_input = false;
    }
    cfg.layout = Layout::Transcoder {
        d_out: d_out.unwrap_or(cfg.d_in),
        skip,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// A crosscoder from `sae(...)`'s options plus `site_widths` (each site's
/// width, in row order; d_in defaults to their sum).
pub fn crosscoder_config(options: &OptionMap) -> Result<SaeConfig> {
    let mut shared = options.clone();
    let widths: Vec<i64> =
        match shared.remove("site_widths") {
            Some(Value::Array(values)) => values
                .iter()
                .map(|v| {
                    v.as_i64().ok_or_else(|| {
                        Error::invalid(format!(
                            "crosscoder: option 'site_widths' must be integers, got {v}"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(Error::invalid(format!(
                    "crosscoder: option 'site_widths' must be an array of widths, got {other}"
                )))
            }
            None => return Err(Error::invalid(
                "crosscoder: option 'site_widths' (each site's width) is required without a store",
            )),
        };
    shared
        .entry("d_in")
        .or_insert_with(|| json!(widths.iter().sum::<i64>()));
    let mut cfg = SaeConfig::from_options(&shared)?;
    cfg.layout = Layout::Crosscoder { widths };
    cfg.validate()?;
    Ok(cfg)
}

/// Options for a dictionary over a store's `sites`: their widths (d_in,
/// d_out or site_widths) unless the options give them.
pub fn options_for_sites(
    layout: &str,
    sites: &[SiteInfo],
    options: &OptionMap,
) -> Result<OptionMap> {
    let mut full = options.clone();
    match layout {
        "transcoder" => {
            let [input, output] = sites else {
                return Err(Error::invalid(format!(
                    "transcoder: the store must hold two sites (input, then output, e.g. harvested with #{{hooks: [\"mlp_in\", \"mlp_out\"]}}), it holds {}: {}",
                    sites.len(),
                    crate::activations::sites::names(sites)
                )));
            };
            full.entry("d_in").or_insert_with(|| json!(input.dim));
            full.entry("d_out").or_insert_with(|| json!(output.dim));
        }
        _ => {
            let widths: Vec<usize> = sites.iter().map(|s| s.dim).collect();
            full.entry("site_widths").or_insert_with(|| json!(widths));
        }
    }
    Ok(full)
}

/// Writes the sites a transcoder or crosscoder was trained on into its
/// metadata (hook names as TransformerLens spells them) unless set.
pub fn record_sites(cfg: &mut SaeConfig, sites: &[SiteInfo]) -> Result<()> {
    let names = sites
        .iter()
        .map(|s| Ok(s.site()?.hook_name()))
        .collect::<Result<Vec<_>>>()?;
    let meta = &mut cfg.metadata;
    if meta.hook_name.is_none() {
        meta.hook_name = names.first().cloned();
    }
    match cfg.layout {
        Layout::Transcoder { .. } if meta.hook_name_out.is_none() => {
            meta.hook_name_out = names.get(1).cloned();
        }
        Layout::Crosscoder { .. } if meta.hook_names.is_empty() => meta.hook_names = names,
        _ => {}
    }
    Ok(())
}

/// Where a transcoder or crosscoder sits in the model: the sites it reads
/// and the sites it writes, from its hook names.
pub fn splice_sites(sae: &Sae) -> Result<(Vec<Site>, Vec<Site>)> {
    let meta = &sae.cfg.metadata;
    let missing = |key: &str| {
        Error::invalid(format!(
            "this {} does not say where it sits in the model (no {key}); train it on a harvested store or give {key}",
            sae.cfg.layout.noun()
        ))
    };
    match &sae.cfg.layout {
        Layout::Autoencoder => Err(Error::invalid(
            "an SAE is spliced at its one site: use ce_loss_recovered",
        )),
        Layout::Transcoder { .. } => {
            let input = meta
                .hook_name
                .as_deref()
                .ok_or_else(|| missing("hook_name"))?;
            let output = meta
                .hook_name_out
                .as_deref()
                .ok_or_else(|| missing("hook_name_out"))?;
            Ok((
                vec![Site::from_hook_name(input)?],
                vec![Site::from_hook_name(output)?],
            ))
        }
        Layout::Crosscoder { widths } => {
            if meta.hook_names.len() != widths.len() {
                return Err(missing("hook_names"));
            }
            let sites = meta
                .hook_names
                .iter()
                .map(|name| Site::from_hook_name(name))
                .collect::<Result<Vec<_>>>()?;
            Ok((sites.clone(), sites))
        }
    }
}

/// The dictionary's prediction for the sites it writes from the clean
/// activations at the sites it reads, each `[batch, T, width]`: a
/// transcoder's ŷ = W_dec·f + b_dec (+ W_skip·x), a crosscoder's
/// reconstruction of every site.
pub fn replace_sites(sae: &Sae, reads: &[tch::Tensor]) -> Result<Vec<tch::Tensor>> {
    let _guard = tch::no_grad_guard();
    let first = reads
        .first()
        .ok_or_else(|| Error::invalid("no activations to replace"))?;
    let leading: Vec<i64> = first.size()[..first.dim().saturating_sub(1)].to_vec();
    let flat = reads
        .iter()
        .map(|t| Ok(t.f_reshape([-1, *t.size().last().unwrap_or(&0)])?))
        .collect::<Result<Vec<_>>>()?;
    let x = tch::Tensor::f_cat(&flat, 1)?
        .f_to(sae.cfg.device)?
        .f_totype(tch::Kind::Float)?;
    let mut y = sae.encode_codes(&x)?.decode(&sae.weights)?;
    if let Some(skip) = sae.weights.skip(&x)? {
        y = y.f_add(&skip)?;
    }
    let widths = sae.cfg.layout.output_widths(sae.cfg.d_in);
    y.f_split_with_sizes(widths.as_slice(), 1)?
        .into_iter()
        .zip(&widths)
        .map(|(part, width)| {
            let mut shape = leading.clone();
            shape.push(*width);
            Ok(part
                .f_reshape(shape.as_slice())?
                .f_totype(first.f_kind()?)?
                .f_to(first.device())?)
        })
        .collect()
}

/// CE loss recovered and KL with the dictionary spliced in at once at every
/// site it writes (a transcoder in place of the MLP), against the same
/// sites zero-ablated (a transcoder: the MLP's output zeroed).
/// `model_loss(None)` is the clean pass, which must come first;
/// `model_loss(Some(replace))` a pass with the written sites replaced
/// ([`crate::model::SitesProbe::measure`] over [`splice_sites`]).
pub fn ce_loss_recovered(
    sae: &Sae,
    mut model_loss: impl FnMut(Option<SitesReplacement>) -> Result<SpliceLoss>,
) -> Result<CeLossRecovered> {
    let clean = model_loss(None)?.cross_entropy;
    let predict = |reads: &[tch::Tensor]| replace_sites(sae, reads);
    let spliced = model_loss(Some(&predict))?;
    let widths = sae.cfg.layout.output_widths(sae.cfg.d_in);
    let zeros = |reads: &[tch::Tensor]| -> Result<Vec<tch::Tensor>> {
        let first = reads
            .first()
            .ok_or_else(|| Error::invalid("no activations to replace"))?;
        let (batch, positions) = (first.size()[0], first.size()[1]);
        let options = (first.f_kind()?, first.device());
        widths
            .iter()
            .map(|w| Ok(tch::Tensor::f_zeros([batch, positions, *w], options)?))
            .collect()
    };
    let zero_ablated = model_loss(Some(&zeros))?;
    Ok(CeLossRecovered::from_passes(clean, spliced, zero_ablated))
}

/// An integer option removed from `options`, if there.
fn take_int(options: &mut OptionMap, context: &str, key: &str) -> Result<Option<i64>> {
    match options.remove(key) {
        None => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            Error::invalid(format!(
                "{context}: option '{key}' must be an integer, got {v}"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(value: Value) -> OptionMap {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn configs_from_options_name_their_bad_keys() {
        let t = transcoder_config(&options(json!({
            "d_in": 6, "d_out": 4, "n_features": 16, "kind": "topk", "k": 2, "skip": true
        })))
        .unwrap();
        assert_eq!(
            t.layout,
            Layout::Transcoder {
                d_out: 4,
                skip: true
            }
        );
        assert!(!t.apply_b_dec_to_input);
        let err = transcoder_config(&options(json!({"d_in": 6, "n_features": 8, "skip": 1})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'skip'"), "{err}");
        let c =
            crosscoder_config(&options(json!({"site_widths": [3, 3], "n_features": 8}))).unwrap();
        assert_eq!(
            (c.d_in, c.layout),
            (6, Layout::Crosscoder { widths: vec![3, 3] })
        );
        let err = crosscoder_config(&options(json!({"n_features": 8}))).unwrap_err();
        assert!(err.to_string().contains("site_widths"), "{err}");
    }

    #[test]
    fn a_transcoder_splices_from_its_input_site_into_its_output_site() {
        crate::rng::seed(4);
        let mut cfg = transcoder_config(&options(json!({
            "d_in": 3, "d_out": 2, "n_features": 5, "skip": true
        })))
        .unwrap();
        let sites = [
            SiteInfo::empty(Site::mlp_in(1), 3),
            SiteInfo::empty(Site::mlp_out(1), 2),
        ];
        record_sites(&mut cfg, &sites).unwrap();
        let sae = Sae::new(cfg).unwrap();
        let (reads, writes) = splice_sites(&sae).unwrap();
        assert_eq!(
            (reads, writes),
            (vec![Site::mlp_in(1)], vec![Site::mlp_out(1)])
        );
        let x = tch::Tensor::randn([2, 4, 3], (tch::Kind::Float, tch::Device::Cpu));
        let y = replace_sites(&sae, &[x.shallow_clone()]).unwrap();
        assert_eq!(y[0].size(), [2, 4, 2]);
        // The same numbers as a forward pass over training rows.
        let rows = tch::Tensor::cat(
            &[
                x.reshape([8, 3]),
                tch::Tensor::zeros([8, 2], (tch::Kind::Float, tch::Device::Cpu)),
            ],
            1,
        );
        let out = sae.forward(&rows, &Default::default()).unwrap();
        let diff = (out.x_hat - y[0].reshape([8, 2]))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
    }
}

#[cfg(test)]
#[path = "xcoder_tests.rs"]
mod training_tests;

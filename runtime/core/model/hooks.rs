//! Reading and editing activations while a model runs.
//!
//! A [`Site`] names one activation: the residual stream entering a block
//! (`resid_pre`), leaving it (`resid_post`), the MLP's input (`mlp_in`, the
//! normalised residual it reads), its hidden neurons (`mlp`) or its output
//! before it joins the residual (`mlp_out`). [`Hooks`] lists the sites to read and the [`Edit`]s to make; the
//! model applies edits first and then records reads, so a read at an edited
//! site sees the edited value. The SAE work replaces the residual with its
//! reconstruction ([`Edit::Map`]); steering adds a feature direction
//! ([`Edit::Add`]); both work during generation too, where each step edits
//! only the new positions.
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;
use tch::Tensor;

/// Which activation of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookPoint {
    /// The residual stream entering the block (`layer == n_layers` is the
    /// final residual, before the last norm).
    ResidPre,
    /// The residual stream leaving the block (the same values as the next
    /// block's `resid_pre`).
    ResidPost,
    /// The MLP's hidden activations, `silu(gate) * up`: its neurons.
    Mlp,
    /// What the MLP reads: the residual after the block's second RMSNorm
    /// (TransformerLens's `ln2.hook_normalized`, gain included). A
    /// transcoder's input.
    MlpIn,
    /// What the MLP writes, before it is added to the residual
    /// (TransformerLens's `hook_mlp_out`). A transcoder's output; replacing
    /// it replaces the MLP.
    MlpOut,
}

impl HookPoint {
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::ResidPre => "resid_pre",
            HookPoint::ResidPost => "resid_post",
            HookPoint::Mlp => "mlp",
            HookPoint::MlpIn => "mlp_in",
            HookPoint::MlpOut => "mlp_out",
        }
    }

    /// Every hook point, in the order a block computes them.
    pub const ALL: [HookPoint; 5] = [
        HookPoint::ResidPre,
        HookPoint::MlpIn,
        HookPoint::Mlp,
        HookPoint::MlpOut,
        HookPoint::ResidPost,
    ];
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HookPoint {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        HookPoint::ALL
            .into_iter()
            .find(|point| point.name() == name)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown hook '{name}' (use \"resid_pre\", \"resid_post\", \"mlp\", \"mlp_in\" or \"mlp_out\")"
                ))
            })
    }
}

/// One activation in the model: a hook point at a layer (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Site {
    pub layer: usize,
    pub point: HookPoint,
}

impl Site {
    pub fn resid_pre(layer: usize) -> Self {
        Site {
            layer,
            point: HookPoint::ResidPre,
        }
    }

    pub fn resid_post(layer: usize) -> Self {
        Site {
            layer,
            point: HookPoint::ResidPost,
        }
    }

    pub fn mlp(layer: usize) -> Self {
        Site {
            layer,
            point: HookPoint::Mlp,
        }
    }

    pub fn mlp_in(layer: usize) -> Self {
        Site {
            layer,
            point: HookPoint::MlpIn,
        }
    }

    pub fn mlp_out(layer: usize) -> Self {
        Site {
            layer,
            point: HookPoint::MlpOut,
        }
    }

    /// An error unless the site exists in a model of `n_layers` blocks.
    pub fn check(self, n_layers: usize) -> Result<()> {
        let last = match self.point {
            HookPoint::ResidPre => n_layers,
            _ => n_layers.saturating_sub(1),
        };
        if self.layer > last || (self.point != HookPoint::ResidPre && n_layers == 0) {
            return Err(Error::invalid(format!(
                "layer {} is out of range for {}: the model has {n_layers} layers, so it takes 0..={last}",
                self.layer, self.point
            )));
        }
        Ok(())
    }

    /// The TransformerLens / SAELens name of the site, as an SAE's
    /// `cfg.json` records it: "blocks.15.hook_resid_pre", "blocks.3.mlp.hook_post".
    pub fn hook_name(self) -> String {
        format!("blocks.{}.{}", self.layer, Self::hook_suffix(self.point))
    }

    /// The part of the TransformerLens name after "blocks.N.".
    fn hook_suffix(point: HookPoint) -> &'static str {
        match point {
            HookPoint::ResidPre => "hook_resid_pre",
            HookPoint::ResidPost => "hook_resid_post",
            HookPoint::Mlp => "mlp.hook_post",
            HookPoint::MlpIn => "ln2.hook_normalized",
            HookPoint::MlpOut => "hook_mlp_out",
        }
    }

    /// The site a TransformerLens / SAELens hook name stands for.
    pub fn from_hook_name(name: &str) -> Result<Self> {
        let unknown = || {
            Error::invalid(format!(
                "hook name '{name}' is not one saelab runs (blocks.N.hook_resid_pre, blocks.N.hook_resid_post, blocks.N.mlp.hook_post, blocks.N.ln2.hook_normalized, blocks.N.hook_mlp_out)"
            ))
        };
        let rest = name.strip_prefix("blocks.").ok_or_else(unknown)?;
        let (layer, suffix) = rest.split_once('.').ok_or_else(unknown)?;
        let layer = layer.parse::<usize>().map_err(|_| unknown())?;
        let point = HookPoint::ALL
            .into_iter()
            .find(|point| Self::hook_suffix(*point) == suffix)
            .ok_or_else(unknown)?;
        Ok(Site { layer, point })
    }

    /// How many blocks must run before this activation exists.
    pub fn blocks_needed(self) -> usize {
        match self.point {
            HookPoint::ResidPre => self.layer,
            _ => self.layer + 1,
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of layer {}", self.point, self.layer)
    }
}

/// A function that rewrites an activation `[batch, positions, width]`. It
/// may borrow what lives as long as the hooks (a script's closure and its
/// engine, for one call).
pub type EditFn<'a> = Box<dyn Fn(&Tensor) -> Result<Tensor> + 'a>;

/// A change to an activation while the model runs.
pub enum Edit<'a> {
    /// Adds a tensor that broadcasts against `[batch, positions, width]`,
    /// usually a `[width]` direction (steering).
    Add(Tensor),
    /// Replaces the activation by a tensor of the same shape (patching).
    Replace(Tensor),
    /// Any function of the activation: an SAE's reconstruction, a clamped feature.
    Map(EditFn<'a>),
}

impl Edit<'_> {
    /// The edited activation, checked to keep its shape.
    pub fn apply(&self, x: &Tensor, site: Site) -> Result<Tensor> {
        let edited = match self {
            Edit::Add(delta) => x.f_add(delta)?,
            Edit::Replace(value) => {
                if value.size() != x.size() {
                    return Err(Error::invalid(format!(
                        "replacement for {site} has shape {:?}, the activation has {:?}",
                        value.size(),
                        x.size()
                    )));
                }
                value.f_to_kind(x.f_kind()?)?.f_to(x.device())?
            }
            Edit::Map(edit) => edit(x)?,
        };
        if edited.size() != x.size() {
            return Err(Error::invalid(format!(
                "an edit at {site} turned shape {:?} into {:?}",
                x.size(),
                edited.size()
            )));
        }
        Ok(edited)
    }
}

impl fmt::Debug for Edit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edit::Add(t) => write!(f, "Add({:?})", t.size()),
            Edit::Replace(t) => write!(f, "Replace({:?})", t.size()),
            Edit::Map(_) => f.write_str("Map(..)"),
        }
    }
}

/// What to read and what to change during one forward pass (or one
/// generation, where the same hooks run at every step).
#[derive(Debug, Default)]
pub struct Hooks<'a> {
    /// Activations to return, in this order.
    pub read: Vec<Site>,
    /// Changes to make, applied in this order where sites coincide.
    pub edits: Vec<(Site, Edit<'a>)>,
}

impl<'a> Hooks<'a> {
    /// Hooks that only read `sites`.
    pub fn reading(sites: &[Site]) -> Self {
        Hooks {
            read: sites.to_vec(),
            edits: Vec::new(),
        }
    }

    /// Adds an edit at `site`.
    pub fn edit(mut self, site: Site, edit: Edit<'a>) -> Self {
        self.edits.push((site, edit));
        self
    }

    /// An error unless every site exists in a model of `n_layers` blocks.
    pub fn check(&self, n_layers: usize) -> Result<()> {
        self.read
            .iter()
            .chain(self.edits.iter().map(|(site, _)| site))
            .try_for_each(|site| site.check(n_layers))
    }

    /// Blocks that must run for every read to be available; edits alone
    /// never stop the forward early since they exist to change the output.
    pub fn blocks_needed(&self) -> usize {
        self.read
            .iter()
            .map(|s| s.blocks_needed())
            .max()
            .unwrap_or(0)
    }

    /// Whether anything happens at `layer`, so blocks without hooks skip the lookup.
    pub fn touches(&self, layer: usize) -> bool {
        self.read
            .iter()
            .chain(self.edits.iter().map(|(site, _)| site))
            .any(|site| site.layer == layer)
    }

    /// Applies the edits at `site` to `x`, then records it for every read of `site`.
    pub fn visit(&self, site: Site, x: Tensor, reads: &mut [Option<Tensor>]) -> Result<Tensor> {
        let touched = self.read.contains(&site) || self.edits.iter().any(|(s, _)| *s == site);
        // Edits and reads see f32, whatever precision the model computes in.
        let mut x = if touched && x.kind() != tch::Kind::Float {
            x.f_to_kind(tch::Kind::Float)?
        } else {
            x
        };
        for (_, edit) in self.edits.iter().filter(|(s, _)| *s == site) {
            x = edit.apply(&x, site)?;
        }
        for (slot, _) in reads
            .iter_mut()
            .zip(&self.read)
            .filter(|(_, s)| **s == site)
        {
            *slot = Some(x.shallow_clone());
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_outside_the_model_are_errors_that_name_the_range() {
        assert!(Site::resid_pre(30).check(30).is_ok());
        assert!(Site::resid_post(29).check(30).is_ok());
        let err = Site::mlp(30).check(30).unwrap_err().to_string();
        assert!(err.contains("layer 30 is out of range for mlp"), "{err}");
        assert!(err.contains("0..=29"), "{err}");
        assert!(Site::resid_pre(31).check(30).is_err());
    }

    #[test]
    fn hook_names_round_trip_and_unknown_ones_are_errors() {
        for site in [
            Site::resid_pre(15),
            Site::resid_post(0),
            Site::mlp(29),
            Site::mlp_in(5),
            Site::mlp_out(5),
        ] {
            assert_eq!(Site::from_hook_name(&site.hook_name()).unwrap(), site);
        }
        assert!(Site::from_hook_name("blocks.3.attn.hook_z").is_err());
        assert!(Site::from_hook_name("blocks.x.hook_resid_pre").is_err());
    }

    #[test]
    fn the_forward_stops_after_the_deepest_read() {
        let hooks = Hooks::reading(&[Site::resid_pre(3), Site::mlp(5), Site::resid_pre(6)]);
        assert_eq!(hooks.blocks_needed(), 6);
        assert_eq!(Hooks::default().blocks_needed(), 0);
    }

    #[test]
    fn edits_apply_in_order_before_reads() {
        let hooks = Hooks::reading(&[Site::resid_pre(1), Site::resid_pre(2)])
            .edit(Site::resid_pre(1), Edit::Add(Tensor::from(1.0f32)))
            .edit(
                Site::resid_pre(1),
                Edit::Map(Box::new(|x| Ok(x.f_mul_scalar(10.0)?))),
            );
        let mut reads = vec![None, None];
        let x = Tensor::zeros([1, 2, 3], (tch::Kind::Float, tch::Device::Cpu));
        let y = hooks.visit(Site::resid_pre(1), x, &mut reads).unwrap();
        assert_eq!(y.double_value(&[0, 1, 2]), 10.0);
        assert!(reads[0].is_some() && reads[1].is_none());
        let shrink = Hooks::default().edit(
            Site::mlp(0),
            Edit::Map(Box::new(|x| Ok(x.f_narrow(2, 0, 1)?))),
        );
        let x = Tensor::zeros([1, 2, 3], (tch::Kind::Float, tch::Device::Cpu));
        let err = shrink.visit(Site::mlp(0), x, &mut []).unwrap_err();
        assert!(err.to_string().contains("turned shape"), "{err}");
    }

    #[test]
    fn hook_names_parse() {
        assert_eq!("mlp".parse::<HookPoint>().unwrap(), HookPoint::Mlp);
        assert_eq!("mlp_out".parse::<HookPoint>().unwrap(), HookPoint::MlpOut);
        assert_eq!(Site::mlp_in(5).hook_name(), "blocks.5.ln2.hook_normalized");
        assert!("attn".parse::<HookPoint>().is_err());
    }
}

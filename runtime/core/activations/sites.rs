//! The sites a store's rows hold side by side. A row of a multi-site store
//! is the concatenation of each site's activation at one token — `mlp_in`
//! then `mlp_out` for a transcoder, `resid_post` of several layers for a
//! crosscoder — all read in one forward pass. Each site keeps its own sum
//! of squared norms and so its own scale (E‖s·x‖² = its width), since a
//! later layer's residual is several times larger than an earlier one's.
use super::manifest::scale_for;
use crate::model::{HookPoint, Site};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// One site of a store's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteInfo {
    pub layer: usize,
    /// "resid_pre", "resid_post", "mlp", "mlp_in" or "mlp_out".
    pub hook: String,
    /// Its width: columns `offset..offset + dim` of a row, in list order.
    pub dim: usize,
    /// Sum of squared L2 norms of this site's part of every row.
    pub sum_squared_norm: f64,
    /// s making E‖s·x‖² = `dim` for this site alone.
    pub scale: f64,
}

impl SiteInfo {
    /// A site with nothing harvested yet.
    pub fn empty(site: Site, dim: usize) -> Self {
        SiteInfo {
            layer: site.layer,
            hook: site.point.name().to_string(),
            dim,
            sum_squared_norm: 0.0,
            scale: 1.0,
        }
    }

    pub fn site(&self) -> Result<Site> {
        Ok(Site {
            layer: self.layer,
            point: self.hook.parse()?,
        })
    }

    /// Short name, as scripts write it: "mlp_out.5".
    pub fn name(&self) -> String {
        format!("{}.{}", self.hook, self.layer)
    }

    /// Adds rows' squared norms and updates the scale.
    /// The site's total over `rows` rows, and the scale it gives.
    pub fn set(&mut self, rows: usize, sum_squared_norm: f64) {
        self.sum_squared_norm = sum_squared_norm;
        self.scale = scale_for(self.dim, rows, self.sum_squared_norm);
    }

    pub fn add(&mut self, rows: usize, sum_squared_norm: f64) {
        self.sum_squared_norm += sum_squared_norm;
        self.scale = scale_for(self.dim, rows, self.sum_squared_norm);
    }
}

/// Names of sites for messages: "mlp_in.5, mlp_out.5".
pub fn names(sites: &[SiteInfo]) -> String {
    sites
        .iter()
        .map(SiteInfo::name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The sites `layers` × `hooks` ask for, layer by layer (a crosscoder's
/// layers in order; a transcoder's input before its output), refusing
/// repeats.
pub fn cross(layers: &[usize], hooks: &[HookPoint]) -> Result<Vec<Site>> {
    let mut sites: Vec<Site> = Vec::new();
    for &layer in layers {
        for &point in hooks {
            let site = Site { layer, point };
            if sites.contains(&site) {
                return Err(Error::invalid(format!(
                    "harvest: {site} is asked for twice"
                )));
            }
            sites.push(site);
        }
    }
    if sites.is_empty() {
        return Err(Error::invalid(
            "harvest: `layers` and `hooks` must name at least one site",
        ));
    }
    Ok(sites)
}

/// A site written as scripts do: "mlp_out.5" (hook, then layer) or its
/// TransformerLens name "blocks.5.hook_mlp_out".
pub fn parse_site(name: &str) -> Result<Site> {
    if name.starts_with("blocks.") {
        return Site::from_hook_name(name);
    }
    let (hook, layer) = name.rsplit_once('.').ok_or_else(|| {
        Error::invalid(format!(
            "site '{name}' must be written hook.layer, e.g. \"mlp_out.5\""
        ))
    })?;
    let layer = layer.parse::<usize>().map_err(|_| {
        Error::invalid(format!(
            "site '{name}': '{layer}' is not a layer number (write hook.layer, e.g. \"mlp_out.5\")"
        ))
    })?;
    Ok(Site {
        layer,
        point: hook.parse()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_times_hooks_keeps_layer_order_and_refuses_repeats() {
        let sites = cross(&[5], &[HookPoint::MlpIn, HookPoint::MlpOut]).unwrap();
        assert_eq!(sites, [Site::mlp_in(5), Site::mlp_out(5)]);
        let sites = cross(&[2, 4], &[HookPoint::ResidPost]).unwrap();
        assert_eq!(sites, [Site::resid_post(2), Site::resid_post(4)]);
        assert!(cross(&[2, 2], &[HookPoint::ResidPost]).is_err());
        assert!(cross(&[], &[HookPoint::ResidPost]).is_err());
    }

    #[test]
    fn sites_parse_from_short_and_transformer_lens_names() {
        assert_eq!(parse_site("mlp_out.5").unwrap(), Site::mlp_out(5));
        assert_eq!(
            parse_site("blocks.5.ln2.hook_normalized").unwrap(),
            Site::mlp_in(5)
        );
        let err = parse_site("mlp_out").unwrap_err().to_string();
        assert!(err.contains("hook.layer"), "{err}");
        assert!(parse_site("attn.3").is_err());
    }

    #[test]
    fn each_site_scales_to_its_own_width() {
        let mut info = SiteInfo::empty(Site::mlp_out(5), 4);
        info.add(2, 2.0); // E‖x‖² = 1 → s = √4 = 2
        assert!((info.scale - 2.0).abs() < 1e-12);
        assert_eq!(info.name(), "mlp_out.5");
        assert_eq!(info.site().unwrap(), Site::mlp_out(5));
    }
}

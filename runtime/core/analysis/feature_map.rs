//! A map of features: a 2-D embedding of decoder directions (one or several
//! SAEs), as the paper's UMAP of feature neighbourhoods. The layout is
//! Barnes-Hut t-SNE (the `bhtsne` crate) on exact nearest neighbours by
//! cosine (computed here by matmul), started from the directions' first two
//! principal components, so the same directions give the same map.
//!
//! How well a map keeps neighbourhoods is measured, not assumed:
//! [`neighbour_preservation`] is the mean fraction of each point's k nearest
//! neighbours in the directions' space that are among its k nearest on the map.
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct MapOptions {
    pub perplexity: f32,
    pub epochs: usize,
    /// Barnes-Hut accuracy (0.5 is the usual trade-off).
    pub theta: f32,
    /// Threads for the layout. One (the default) makes the map repeat
    /// exactly; more is faster, but the order of parallel sums then varies
    /// and t-SNE amplifies it (the clusters stay, the points move).
    pub threads: usize,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            perplexity: 30.0,
            epochs: 750,
            theta: 0.5,
            threads: 1,
        }
    }
}

fn unit_rows(x: &Tensor) -> Result<Tensor> {
    let x = x.f_to(Device::Cpu)?.f_totype(Kind::Float)?;
    let norms = x
        .f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?
        .f_clamp_min(1e-12)?;
    Ok(x.f_div(&norms)?)
}

/// Each row's `k` nearest other rows by cosine: (indices, cosines) [n, k].
fn nearest_by_cosine(unit: &Tensor, k: i64) -> Result<(Tensor, Tensor)> {
    let n = unit.size()[0];
    let (mut indices, mut cosines) = (Vec::new(), Vec::new());
    let chunk = 2048;
    let mut start = 0;
    while start < n {
        crate::interrupt::check()?;
        let len = chunk.min(n - start);
        let sims = unit
            .f_narrow(0, start, len)?
            .f_matmul(&unit.f_transpose(0, 1)?)?;
        // Leave each row out of its own neighbours.
        let own = Tensor::f_arange_start(start, start + len, (Kind::Int64, Device::Cpu))?;
        let sims = sims.f_scatter_value(1, &own.f_unsqueeze(1)?, f64::NEG_INFINITY)?;
        let (values, at) = sims.f_topk(k, 1, true, true)?;
        cosines.push(values);
        indices.push(at);
        start += len;
    }
    Ok((Tensor::f_cat(&indices, 0)?, Tensor::f_cat(&cosines, 0)?))
}

/// The first two principal-component scores, scaled to a standard deviation
/// of 1e-4 (t-SNE's usual initial spread).
fn pca_layout(unit: &Tensor) -> Result<Vec<f32>> {
    let centred = unit.f_sub(&unit.f_mean_dim(0, true, Kind::Float)?)?;
    // The top two eigenvectors of the covariance (eigh sorts ascending).
    let covariance = centred.f_transpose(0, 1)?.f_matmul(&centred)?;
    let (_, vectors) = Tensor::f_linalg_eigh(&covariance, "L")?;
    let d = vectors.size()[1];
    let scores = centred.f_matmul(&vectors.f_narrow(1, d - 2, 2)?)?;
    let std = scores.f_std(true)?.f_clamp_min(1e-12)?;
    let scores = scores.f_div(&std)?.f_mul_scalar(1e-4)?.f_contiguous()?;
    Ok(Vec::try_from(&scores.f_view([-1])?)?)
}

/// A 2-D layout of `directions` [n, d], [n, 2] as (x, y) pairs.
pub fn embed(directions: &Tensor, opts: &MapOptions) -> Result<Vec<(f32, f32)>> {
    let _guard = tch::no_grad_guard();
    let n = directions.size()[0];
    let k = (3.0 * opts.perplexity).ceil() as i64;
    if !(opts.perplexity > 0.0 && opts.epochs > 0 && opts.theta > 0.0) {
        return Err(Error::invalid("perplexity, epochs and theta must be > 0"));
    }
    if n <= k {
        return Err(Error::invalid(format!(
            "a map with perplexity {} needs more than {k} features, got {n} (lower the perplexity)",
            opts.perplexity
        )));
    }
    let unit = unit_rows(directions)?;
    if unit.f_isfinite()?.f_all()?.f_int64_value(&[])? == 0 {
        return Err(Error::invalid(
            "the decoder directions hold NaN or infinite values",
        ));
    }
    let (indices, cosines) = nearest_by_cosine(&unit, k)?;
    let indices: Vec<Vec<i64>> = Vec::try_from(&indices)?;
    let cosines: Vec<Vec<f32>> = Vec::try_from(&cosines)?;
    // Euclidean distance between unit vectors, a metric that orders like cosine.
    let neighbors: Vec<Vec<bhtsne::Neighbor<f32>>> = indices
        .iter()
        .zip(&cosines)
        .map(|(at, cos)| {
            at.iter()
                .zip(cos)
                .map(|(&index, &c)| bhtsne::Neighbor {
                    index: index as usize,
                    distance: (2.0 - 2.0 * c).max(0.0).sqrt(),
                })
                .collect()
        })
        .collect();
    let init = pca_layout(&unit)?;
    let samples: Vec<usize> = (0..n as usize).collect();
    // bhtsne panics on inputs it rejects; everything it checks is checked
    // above, and a panic that still happens becomes an error, not an abort.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
        .build()
        .map_err(|e| Error::invalid(format!("cannot start the map's threads: {e}")))?;
    // Nothing the closure touches is used again after a panic.
    let layout = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.install(|| {
            let mut tsne: bhtsne::tSNE<f32, usize> = bhtsne::tSNE::new(&samples);
            tsne.perplexity(opts.perplexity)
                .epochs(opts.epochs)
                .initial_embedding(init)
                .barnes_hut_with_neighbors(opts.theta, &neighbors);
            tsne.embedding()
        })
    }))
    .map_err(|_| Error::invalid("t-SNE failed on these directions"))?;
    Ok(layout.chunks_exact(2).map(|p| (p[0], p[1])).collect())
}

/// Mean fraction of each point's `k` nearest neighbours by cosine among
/// `directions` that are also among its `k` nearest on the `layout`.
pub fn neighbour_preservation(directions: &Tensor, layout: &[(f32, f32)], k: i64) -> Result<f64> {
    let _guard = tch::no_grad_guard();
    let unit = unit_rows(directions)?;
    let n = unit.size()[0];
    if layout.len() as i64 != n || n <= k {
        return Err(Error::invalid(
            "the layout must have one point per direction, more than k",
        ));
    }
    let (high, _) = nearest_by_cosine(&unit, k)?;
    let flat: Vec<f32> = layout.iter().flat_map(|&(x, y)| [x, y]).collect();
    let points = Tensor::f_from_slice(&flat)?.f_view([n, 2])?;
    // Nearest on the map: cosine of nothing — use negative squared distance.
    let (mut low, mut start) = (Vec::new(), 0);
    while start < n {
        let len = 2048.min(n - start);
        let d = Tensor::f_cdist(&points.f_narrow(0, start, len)?, &points, 2.0, None)?.f_neg()?;
        let own = Tensor::f_arange_start(start, start + len, (Kind::Int64, Device::Cpu))?;
        let d = d.f_scatter_value(1, &own.f_unsqueeze(1)?, f64::NEG_INFINITY)?;
        low.push(d.f_topk(k, 1, true, true)?.1);
        start += len;
    }
    let low = Tensor::f_cat(&low, 0)?;
    // Shared neighbours per row: compare every pair of the two k-lists.
    let shared = high
        .f_unsqueeze(2)?
        .f_eq_tensor(&low.f_unsqueeze(1)?)?
        .f_sum_dim_intlist([1i64, 2].as_slice(), false, Kind::Float)?;
    Ok(shared.f_mean(Kind::Float)?.f_double_value(&[])? / k as f64)
}

/// The PCA layout alone (a baseline for [`neighbour_preservation`]).
pub fn pca_embed(directions: &Tensor) -> Result<Vec<(f32, f32)>> {
    let _guard = tch::no_grad_guard();
    let flat = pca_layout(&unit_rows(directions)?)?;
    Ok(flat.chunks_exact(2).map(|p| (p[0], p[1])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Directions in 8 tight clusters around random centres.
    fn clustered(points_per_cluster: i64) -> (Tensor, Vec<i64>) {
        crate::rng::seed(11);
        let opts = (Kind::Float, Device::Cpu);
        let centres = Tensor::randn([8, 32], opts);
        let labels: Vec<i64> = (0..8 * points_per_cluster)
            .map(|i| i / points_per_cluster)
            .collect();
        let index = Tensor::from_slice(&labels);
        let x = centres.index_select(0, &index)
            + Tensor::randn([8 * points_per_cluster, 32], opts) * 0.05;
        (x, labels)
    }

    #[test]
    fn clusters_of_directions_stay_together_and_the_map_repeats() {
        let (x, labels) = clustered(40);
        let opts = MapOptions {
            epochs: 300,
            perplexity: 10.0,
            ..Default::default()
        };
        let layout = embed(&x, &opts).unwrap();
        assert_eq!(
            layout,
            embed(&x, &opts).unwrap(),
            "the same directions give the same map"
        );
        // Each point's nearest map neighbour is in its own cluster.
        let same = (0..layout.len())
            .filter(|&i| {
                let nearest = (0..layout.len())
                    .filter(|&j| j != i)
                    .min_by(|&a, &b| {
                        let d = |j: usize| {
                            (layout[i].0 - layout[j].0).powi(2)
                                + (layout[i].1 - layout[j].1).powi(2)
                        };
                        d(a).total_cmp(&d(b))
                    })
                    .unwrap();
                labels[nearest] == labels[i]
            })
            .count();
        assert!(
            same as f64 / layout.len() as f64 > 0.95,
            "{same} of {}",
            layout.len()
        );
        let kept = neighbour_preservation(&x, &layout, 10).unwrap();
        assert!(kept > 0.5, "t-SNE kept {kept} of the neighbours");
        assert!(embed(&x.narrow(0, 0, 20), &opts)
            .unwrap_err()
            .to_string()
            .contains("perplexity"));
    }
}

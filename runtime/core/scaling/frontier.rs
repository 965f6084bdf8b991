//! The compute-optimal frontier: from a sweep of runs at several compute
//! budgets, the best number of features F and of steps S per budget, and how
//! each grows with compute, `F_opt ∝ C^α_F` and `S_opt ∝ C^α_S`
//! (Scaling Monosemanticity, Anthropic 2024; the isoFLOP method is
//! Chinchilla's approach 2, Hoffmann et al. 2022).
use super::stats::{self, fit_line, geometric_mean, Interval};
use super::FitError;
use super::{check_confidence, check_enough, check_finite, check_positive, distinct_count};
use nalgebra::{DMatrix, DVector};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

/// One training run of a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Run {
    /// The caller's identifier, handed back on the frontier point it wins.
    pub id: usize,
    pub n_features: f64,
    pub steps: f64,
    /// Training compute C (FLOPs, or anything proportional to them).
    pub compute: f64,
    /// Final loss of the run.
    pub loss: f64,
}

/// How runs are grouped into isoFLOP buckets (runs of "the same" compute).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucketing {
    /// Fixed log-spaced buckets: a run belongs to bucket
    /// `round(bins · log10 C)`. Works for any sweep, designed or not, but a
    /// budget sitting on a bucket edge can be split by small jitter in C.
    PerDecade(f64),
    /// Runs sorted by compute start a new bucket where C grows by more than
    /// the factor `1 + tolerance` over the previous run. Never splits a
    /// designed budget, but chains together a sweep without gaps in C.
    Tolerance(f64),
}

/// Options for [`compute_frontier`].
#[derive(Debug, Clone, Serialize)]
pub struct FrontierOptions {
    pub bucketing: Bucketing,
    /// Take each bucket's optimum from a parabola in ln F fitted to its
    /// isoFLOP curve, instead of its lowest-loss run. Falls back to the
    /// lowest-loss run when a bucket has fewer than 3 distinct F, the
    /// parabola opens downward, or its vertex lies outside the bucket's F range.
    pub parabola: bool,
    /// Bootstrap resamples of the frontier points for the exponent
    /// intervals; 0 skips them (as do fewer than 3 buckets).
    pub bootstrap: usize,
    /// Coverage of the bootstrap intervals, e.g. 0.95.
    pub confidence: f64,
    /// Seed of the resampling RNG.
    pub seed: u64,
}

impl Default for FrontierOptions {
    fn default() -> Self {
        FrontierOptions {
            // Wide enough to hold a budget's jitter, narrow enough for budgets
            // a factor of 2 apart (0.3 decades) to land in different buckets.
            bucketing: Bucketing::PerDecade(4.0),
            parabola: false,
            bootstrap: 200,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// How a bucket's optimum was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimum {
    /// The lowest-loss run of the bucket.
    Argmin,
    /// The vertex of a parabola in ln F through the bucket's runs.
    Parabola,
}

/// The compute-optimal point of one isoFLOP bucket.
#[derive(Debug, Clone, Serialize)]
pub struct FrontierPoint {
    /// Geometric mean of the bucket's compute.
    pub compute: f64,
    pub n_features: f64,
    /// For a parabola optimum, the steps of the bucket's runs interpolated
    /// (linearly in ln F, ln S) to the optimal F.
    pub steps: f64,
    pub loss: f64,
    /// `id` of the bucket's lowest-loss run (also when the parabola is used).
    pub run_id: usize,
    /// Runs in the bucket.
    pub n_runs: usize,
    /// `id`s of every run in the bucket, by increasing compute: its isoFLOP curve.
    pub run_ids: Vec<usize>,
    pub optimum: Optimum,
    /// Whether the bucket's lowest-loss run has a narrower and a wider run
    /// beside it: an optimum at the edge of the widths tried is a bound, not
    /// a minimum, and the study should widen its range there.
    pub bracketed: bool,
}

/// `y = coefficient · C^exponent`, fitted by least squares in log-log space.
#[derive(Debug, Clone, Serialize)]
pub struct Exponent {
    pub coefficient: f64,
    pub exponent: f64,
    /// Bootstrap interval of the exponent.
    pub interval: Option<Interval>,
    /// R² of ln y.
    pub r2: f64,
}

/// Which of the two optimal quantities grows faster with compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    Features,
    Steps,
}

/// The frontier and its scaling exponents.
#[derive(Debug, Clone, Serialize)]
pub struct Frontier {
    /// One point per isoFLOP bucket, by increasing compute.
    pub points: Vec<FrontierPoint>,
    /// `F_opt ∝ C^α_F`.
    pub features: Exponent,
    /// `S_opt ∝ C^α_S`.
    pub steps: Exponent,
    /// The quantity with the larger exponent.
    pub grows_faster: Quantity,
    /// `α_F − α_S`.
    pub exponent_gap: f64,
    /// Bootstrap interval of `α_F − α_S`, from the same resamples as the
    /// exponents; when it excludes 0, `grows_faster` is not a coin toss.
    pub exponent_gap_interval: Option<Interval>,
    /// Bootstrap resamples that entered the intervals.
    pub bootstrap_resamples: usize,
}

/// Groups `runs` into isoFLOP buckets, takes each bucket's compute-optimal
/// point and fits `F_opt = k_F·C^α_F` and `S_opt = k_S·C^α_S` through them.
///
/// Errors: no runs ([`FitError::EmptyFrontier`]), a non-finite field, a
/// non-positive F, S or C, fewer than two buckets, or invalid options.
pub fn compute_frontier(runs: &[Run], opts: &FrontierOptions) -> Result<Frontier, FitError> {
    if runs.is_empty() {
        return Err(FitError::EmptyFrontier);
    }
    check_runs(runs)?;
    check_options(opts)?;
    let points = bucket_runs(runs, opts.bucketing)
        .iter()
        .map(|bucket| optimum(bucket, opts.parabola))
        .collect::<Result<Vec<_>, _>>()?;
    check_enough(points.len(), 2, "isoFLOP buckets")?;
    let log_c: Vec<f64> = points.iter().map(|p| p.compute.ln()).collect();
    let log_f: Vec<f64> = points.iter().map(|p| p.n_features.ln()).collect();
    let log_s: Vec<f64> = points.iter().map(|p| p.steps.ln()).collect();
    let mut features = fit_exponent(&log_c, &log_f)?;
    let mut steps = fit_exponent(&log_c, &log_s)?;
    let intervals = bootstrap(&log_c, &log_f, &log_s, opts);
    features.interval = intervals.as_ref().map(|i| i.features);
    steps.interval = intervals.as_ref().map(|i| i.steps);
    Ok(Frontier {
        points,
        grows_faster: if features.exponent >= steps.exponent {
            Quantity::Features
        } else {
            Quantity::Steps
        },
        exponent_gap: features.exponent - steps.exponent,
        exponent_gap_interval: intervals.as_ref().map(|i| i.gap),
        bootstrap_resamples: intervals.map_or(0, |i| i.resamples),
        features,
        steps,
    })
}

fn check_runs(runs: &[Run]) -> Result<(), FitError> {
    let column = |field: fn(&Run) -> f64| runs.iter().map(field).collect::<Vec<f64>>();
    check_finite("runs.loss", &column(|r| r.loss))?;
    for (name, values) in [
        ("runs.n_features", column(|r| r.n_features)),
        ("runs.steps", column(|r| r.steps)),
        ("runs.compute", column(|r| r.compute)),
    ] {
        check_finite(name, &values)?;
        check_positive(name, &values)?;
    }
    Ok(())
}

fn check_options(opts: &FrontierOptions) -> Result<(), FitError> {
    let (name, value) = match opts.bucketing {
        Bucketing::PerDecade(bins) => ("bins_per_decade", bins),
        Bucketing::Tolerance(tolerance) => ("tolerance", tolerance),
    };
    if !(value.is_finite() && value > 0.0) {
        return Err(FitError::InvalidOption {
            name,
            reason: format!("must be a positive number, got {value}"),
        });
    }
    check_confidence(opts.confidence)
}

/// Runs grouped into buckets, by increasing compute; no bucket is empty.
fn bucket_runs(runs: &[Run], bucketing: Bucketing) -> Vec<Vec<&Run>> {
    let mut sorted: Vec<&Run> = runs.iter().collect();
    sorted.sort_by(|a, b| a.compute.total_cmp(&b.compute));
    let same_bucket = |previous: &Run, run: &Run| match bucketing {
        Bucketing::PerDecade(bins) => {
            let key = |c: f64| (bins * c.log10()).round();
            key(previous.compute) == key(run.compute)
        }
        Bucketing::Tolerance(tolerance) => run.compute <= previous.compute * (1.0 + tolerance),
    };
    let mut buckets: Vec<Vec<&Run>> = Vec::new();
    for run in sorted {
        match buckets.last_mut() {
            Some(bucket) if same_bucket(bucket[bucket.len() - 1], run) => bucket.push(run),
            _ => buckets.push(vec![run]),
        }
    }
    buckets
}

/// The bucket's compute-optimal point: its lowest-loss run, or the parabola vertex.
fn optimum(bucket: &[&Run], parabola: bool) -> Result<FrontierPoint, FitError> {
    let best = bucket
        .iter()
        .min_by(|a, b| a.loss.total_cmp(&b.loss))
        .ok_or(FitError::EmptyFrontier)?;
    let compute: Vec<f64> = bucket.iter().map(|r| r.compute).collect();
    let narrower = bucket.iter().any(|r| r.n_features < best.n_features);
    let wider = bucket.iter().any(|r| r.n_features > best.n_features);
    let mut point = FrontierPoint {
        compute: geometric_mean(&compute),
        n_features: best.n_features,
        steps: best.steps,
        loss: best.loss,
        run_id: best.id,
        n_runs: bucket.len(),
        run_ids: bucket.iter().map(|r| r.id).collect(),
        optimum: Optimum::Argmin,
        bracketed: narrower && wider,
    };
    if let Some(vertex) = parabola.then(|| parabola_vertex(bucket)).flatten() {
        point.n_features = vertex.n_features;
        point.steps = vertex.steps;
        point.loss = vertex.loss;
        point.optimum = Optimum::Parabola;
    }
    Ok(point)
}

struct Vertex {
    n_features: f64,
    steps: f64,
    loss: f64,
}

/// Minimum of `loss ≈ q0 + q1·u + q2·u²`, `u = ln F − mean(ln F)`, when the
/// parabola opens upward and its vertex lies among the bucket's F.
fn parabola_vertex(bucket: &[&Run]) -> Option<Vertex> {
    let log_f: Vec<f64> = bucket.iter().map(|r| r.n_features.ln()).collect();
    if distinct_count(&log_f) < 3 {
        return None;
    }
    // Centring keeps the u² column from being nearly parallel to the constant one.
    let centre = log_f.iter().sum::<f64>() / log_f.len() as f64;
    let u: Vec<f64> = log_f.iter().map(|f| f - centre).collect();
    let design = DMatrix::from_fn(u.len(), 3, |i, j| u[i].powi(j as i32));
    let losses = DVector::from_iterator(bucket.len(), bucket.iter().map(|r| r.loss));
    let q = design.svd(true, true).solve(&losses, 1e-12).ok()?;
    if q[2] <= 0.0 {
        return None;
    }
    let vertex = -q[1] / (2.0 * q[2]);
    let (lowest, highest) = u
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if !(lowest..=highest).contains(&vertex) {
        return None;
    }
    let log_s: Vec<f64> = bucket.iter().map(|r| r.steps.ln()).collect();
    let steps_line = fit_line(&u, &log_s).ok()?;
    Some(Vertex {
        n_features: (centre + vertex).exp(),
        steps: (steps_line.intercept + steps_line.slope * vertex).exp(),
        loss: q[0] + q[1] * vertex + q[2] * vertex * vertex,
    })
}

/// `ln y = ln k + α·ln C` by least squares.
fn fit_exponent(log_c: &[f64], log_y: &[f64]) -> Result<Exponent, FitError> {
    let line = fit_line(log_c, log_y)?;
    let residuals: Vec<f64> = log_c
        .iter()
        .zip(log_y)
        .map(|(c, y)| y - (line.intercept + line.slope * c))
        .collect();
    Ok(Exponent {
        coefficient: line.intercept.exp(),
        exponent: line.slope,
        interval: None,
        r2: stats::r_squared(log_y, &residuals),
    })
}

struct ExponentIntervals {
    features: Interval,
    steps: Interval,
    gap: Interval,
    resamples: usize,
}

/// Percentile intervals of α_F, α_S and α_F − α_S over resampled frontier
/// points; resampling both from the same points keeps their correlation.
fn bootstrap(
    log_c: &[f64],
    log_f: &[f64],
    log_s: &[f64],
    opts: &FrontierOptions,
) -> Option<ExponentIntervals> {
    // Two points always fit exactly; their "interval" would mean nothing.
    if opts.bootstrap == 0 || log_c.len() < 3 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let (mut features, mut steps, mut gap) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..opts.bootstrap {
        let indices = stats::resample(log_c.len(), &mut rng);
        let pick = |values: &[f64]| indices.iter().map(|&i| values[i]).collect::<Vec<f64>>();
        let sample_c = pick(log_c);
        let (Ok(f), Ok(s)) = (
            fit_line(&sample_c, &pick(log_f)),
            fit_line(&sample_c, &pick(log_s)),
        ) else {
            continue;
        };
        features.push(f.slope);
        steps.push(s.slope);
        gap.push(f.slope - s.slope);
    }
    if features.is_empty() {
        return None;
    }
    let confidence = opts.confidence;
    Some(ExponentIntervals {
        resamples: features.len(),
        features: stats::percentile_interval(&mut features, confidence),
        steps: stats::percentile_interval(&mut steps, confidence),
        gap: stats::percentile_interval(&mut gap, confidence),
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_data::with_noise;
    use super::*;

    const ALPHA: f64 = 0.35;
    const BETA: f64 = 0.5;
    /// C = COST · F · S: FLOPs per feature per step (12·d_in·batch for a ReLU SAE).
    const COST: f64 = 12.0 * 512.0 * 4096.0;
    /// Along C = COST·F·S the law below is minimised at F ∝ C^(β/(α+β)), S ∝ C^(α/(α+β)).
    const FEATURE_EXPONENT: f64 = BETA / (ALPHA + BETA);
    const STEP_EXPONENT: f64 = ALPHA / (ALPHA + BETA);

    fn law(f: f64, s: f64) -> f64 {
        1.5 + 50.0 * f.powf(-ALPHA) + 200.0 * s.powf(-BETA)
    }

    /// Setting ∂L/∂F = 0 along F·S = D gives F^(α+β) = (αA / βB)·D^β.
    fn optimal_features(compute: f64) -> f64 {
        let ratio: f64 = ALPHA * 50.0 / (BETA * 200.0);
        (ratio * (compute / COST).powf(BETA)).powf(1.0 / (ALPHA + BETA))
    }

    /// Seven budgets half a decade apart, seven runs each at F = F_opt·2^(m + shift);
    /// run ids are `10·budget + m + 3`, so the optimal (m = 0) runs end in 3.
    fn isoflop_sweep(shift: f64) -> Vec<Run> {
        let mut runs = Vec::new();
        for budget in 0..7 {
            let compute = 1e15 * 10f64.powf(f64::from(budget) / 2.0);
            for m in -3..=3 {
                let n_features = optimal_features(compute) * 2f64.powf(f64::from(m) + shift);
                let steps = compute / (COST * n_features);
                let id = (10 * budget + m + 3) as usize;
                let loss = law(n_features, steps);
                runs.push(Run {
                    id,
                    n_features,
                    steps,
                    compute,
                    loss,
                });
            }
        }
        runs
    }

    #[test]
    fn argmin_frontier_picks_the_optimal_run_of_each_budget() {
        let frontier = compute_frontier(&isoflop_sweep(0.0), &FrontierOptions::default()).unwrap();
        let ids: Vec<usize> = frontier.points.iter().map(|p| p.run_id).collect();
        assert_eq!(ids, vec![3, 13, 23, 33, 43, 53, 63]);
        assert!(frontier
            .points
            .iter()
            .all(|p| p.n_runs == 7 && p.optimum == Optimum::Argmin));
        assert!((frontier.features.exponent - FEATURE_EXPONENT).abs() < 1e-9);
        assert!((frontier.steps.exponent - STEP_EXPONENT).abs() < 1e-9);
        assert_eq!(frontier.grows_faster, Quantity::Features);
        assert!(frontier.exponent_gap_interval.unwrap().lower > 0.0);
    }

    #[test]
    fn an_optimum_at_the_edge_of_the_widths_is_not_bracketed() {
        // Shifted by three and a half octaves, every budget's best run is its narrowest.
        let frontier = compute_frontier(&isoflop_sweep(0.0), &FrontierOptions::default()).unwrap();
        assert!(frontier.points.iter().all(|p| p.bracketed));
        let edge = compute_frontier(&isoflop_sweep(3.5), &FrontierOptions::default()).unwrap();
        assert!(edge.points.iter().all(|p| !p.bracketed), "{edge:?}");
    }

    #[test]
    fn parabola_frontier_finds_the_optimum_between_runs() {
        let opts = FrontierOptions {
            parabola: true,
            ..Default::default()
        };
        let frontier = compute_frontier(&isoflop_sweep(0.4), &opts).unwrap();
        for point in &frontier.points {
            assert_eq!(point.optimum, Optimum::Parabola);
            let truth = optimal_features(point.compute);
            // The nearest runs are 2^0.4 and 2^-0.6 away (32%, 34%). The parabola
            // does much better, though not exactly: the curve is not symmetric in ln F.
            assert!((point.n_features / truth - 1.0).abs() < 0.1, "{point:?}");
            assert!((point.steps * point.n_features * COST / point.compute - 1.0).abs() < 1e-6);
        }
        // The isoFLOP curves differ only in scale, so any bias is the same at every budget.
        assert!((frontier.features.exponent - FEATURE_EXPONENT).abs() < 1e-6);
        assert!((frontier.steps.exponent - STEP_EXPONENT).abs() < 1e-6);
    }

    #[test]
    fn noisy_frontier_intervals_contain_the_true_exponents() {
        let mut runs = isoflop_sweep(0.25);
        let losses: Vec<f64> = runs.iter().map(|r| r.loss).collect();
        for (run, loss) in runs.iter_mut().zip(with_noise(&losses, 0.002, 5)) {
            run.loss = loss;
        }
        let opts = FrontierOptions {
            parabola: true,
            ..Default::default()
        };
        let frontier = compute_frontier(&runs, &opts).unwrap();
        assert!(
            frontier
                .features
                .interval
                .unwrap()
                .contains(FEATURE_EXPONENT),
            "{frontier:?}"
        );
        assert!(
            frontier.steps.interval.unwrap().contains(STEP_EXPONENT),
            "{frontier:?}"
        );
        assert!(frontier.bootstrap_resamples > 150);
    }

    #[test]
    fn jittered_budgets_fall_into_one_bucket_either_way() {
        let mut runs = isoflop_sweep(0.0);
        for (i, run) in runs.iter_mut().enumerate() {
            run.compute *= 1.0 + 0.01 * ((i % 3) as f64 - 1.0);
        }
        for bucketing in [Bucketing::PerDecade(4.0), Bucketing::Tolerance(0.05)] {
            let opts = FrontierOptions {
                bucketing,
                bootstrap: 0,
                ..Default::default()
            };
            let frontier = compute_frontier(&runs, &opts).unwrap();
            assert_eq!(frontier.points.len(), 7, "{bucketing:?}");
            assert!(frontier.points.iter().all(|p| p.n_runs == 7));
        }
    }

    #[test]
    fn parabola_falls_back_to_the_argmin_when_it_cannot_be_trusted() {
        let run = |id, n_features: f64, loss| Run {
            id,
            n_features,
            steps: 1e6 / n_features,
            compute: 1e6,
            loss,
        };
        // Two feature counts only; then a curve that bends downward.
        let two = [run(0, 10.0, 2.0), run(1, 100.0, 1.0)];
        let concave = [run(2, 10.0, 1.0), run(3, 100.0, 2.0), run(4, 1000.0, 1.5)];
        for bucket in [&two[..], &concave[..]] {
            let refs: Vec<&Run> = bucket.iter().collect();
            let point = optimum(&refs, true).unwrap();
            assert_eq!(point.optimum, Optimum::Argmin);
        }
    }

    #[test]
    fn frontier_errors_name_the_problem() {
        let opts = FrontierOptions::default();
        assert_eq!(
            compute_frontier(&[], &opts).unwrap_err(),
            FitError::EmptyFrontier
        );
        let one_budget: Vec<Run> = isoflop_sweep(0.0).into_iter().take(7).collect();
        assert!(matches!(
            compute_frontier(&one_budget, &opts),
            Err(FitError::TooFewPoints {
                what: "isoFLOP buckets",
                got: 1,
                ..
            })
        ));
        let mut runs = isoflop_sweep(0.0);
        runs[4].compute = -1.0;
        assert!(matches!(
            compute_frontier(&runs, &opts),
            Err(FitError::NonPositive {
                name: "runs.compute",
                index: 4,
                ..
            })
        ));
        runs[4].compute = 1e15;
        runs[5].loss = f64::NAN;
        assert!(matches!(
            compute_frontier(&runs, &opts),
            Err(FitError::NonFinite {
                name: "runs.loss",
                index: 5,
                ..
            })
        ));
        runs[5].loss = 1.0;
        let bad = FrontierOptions {
            bucketing: Bucketing::PerDecade(0.0),
            ..opts
        };
        assert!(matches!(
            compute_frontier(&runs, &bad),
            Err(FitError::InvalidOption {
                name: "bins_per_decade",
                ..
            })
        ));
    }
}

//! Scaling-law fits from scripts recover known parameters; CSV round-trips.
use crate::support::{eval, eval_err, float, floats};

/// Synthetic loss curves L = a·C^−0.25 (+ 0.5) with 1% multiplicative noise
/// (hence the log-space fit, which weighs every point alike).
const DATA: &str = "
    seed(1);
    let xs = []; let ys = []; let ys_offset = [];
    for i in 0..40 {
        let x = 10.0 ** (2.0 + i * 0.15);
        let noise = 1.0 + 0.01 * randn([1]).item();
        xs.push(x);
        ys.push(3.0 * x ** -0.25 * noise);
        ys_offset.push((30.0 * x ** -0.25 + 0.5) * noise);
    }";

#[test]
fn power_law_fits_recover_known_exponents() {
    let b = float(&format!("{DATA} fit_power_law(xs, ys).b"));
    assert!((b - 0.25).abs() / 0.25 < 0.02, "b = {b}");
    let fit = eval(&format!(
        "{DATA} fit_power_law(xs, ys_offset, #{{offset: true, log_space: true, bootstrap: 50}})"
    ))
    .cast::<rhai::Map>();
    let c = fit["c"].as_float().unwrap();
    let b = fit["b"].as_float().unwrap();
    assert!((c - 0.5).abs() / 0.5 < 0.05, "c = {c}");
    assert!((b - 0.25).abs() / 0.25 < 0.02, "b = {b}");
    assert!(fit.contains_key("bootstrap") && fit.contains_key("r2"));
}

#[test]
fn closures_and_named_models_fit() {
    let p = eval(&format!(
        "{DATA} fit(|x, p| p[0] * x ** (-p[1]), xs, ys, [1.0, 0.1]).params"
    ))
    .into_typed_array::<f64>()
    .unwrap();
    assert!((p[1] - 0.25).abs() < 0.01, "{p:?}");
    let named = float("fit(\"linear\", [1, 2, 3, 4], [3.0, 5.0, 7.0, 9.0], [1.0, 0.0]).params[0]");
    assert!((named - 2.0).abs() < 1e-6);
}

#[test]
fn frontier_picks_the_lowest_loss_run_per_budget() {
    let result = eval(
        "let runs = [];
         for c in [1e9, 1e10, 1e11] {
             for f in [256, 1024, 4096, 16384] {
                 let s = c / (6.0 * 576 * f);
                 runs.push(#{n_features: f, steps: s, compute: c, loss: 0.5 + 40.0 * f ** -0.5 + 300.0 * s ** -0.5});
             }
         }
         let front = compute_frontier(runs);
         [front.runs.len(), front.features.exponent, front.steps.exponent]",
    )
    .into_array()
    .unwrap();
    assert_eq!(result[0].as_int().unwrap(), 3);
    assert!(result[1].as_float().unwrap().is_finite());
}

#[test]
fn fits_reject_bad_data_clearly() {
    assert!(eval_err("fit_power_law([1, 2, 3], [1.0, -2.0, 3.0])").contains("positive"));
    assert!(eval_err("fit_power_law([1.0], [1.0])")
        .to_lowercase()
        .contains("point"));
    let mismatch = eval_err("fit_power_law([1, 2], [1.0])");
    assert!(
        mismatch.contains("2") && mismatch.contains("1"),
        "{mismatch}"
    );
    assert!(eval_err("fit(\"quartic\", [1, 2, 3], [1, 2, 3], [1.0])").contains("quartic"));
}

#[test]
fn csv_files_round_trip_arrays_of_maps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs/sweep.csv").display().to_string();
    let loss = float(&format!(
        "write_csv(\"{path}\", [#{{n_features: 256, loss: 0.5}}, #{{n_features: 512, loss: 0.25}}]);
         let rows = read_csv(\"{path}\"); rows[1].loss + rows[1].n_features"
    ));
    assert_eq!(loss, 512.25);
}

#[test]
fn an_interrupted_sweep_resumes_without_repeating_finished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sweep.csv").display().to_string();
    let grid = "#{n_features: [256, 512], steps: [10, 100]}";
    // The third run fails, as a killed process would stop the sweep there.
    let err = eval_err(&format!(
        "let calls = 0;
         sweep({grid}, |run| {{ if run.n_features == 512 && run.steps == 10 {{ throw \"killed\"; }} #{{loss: 1.0 / run.steps}} }}, \"{csv}\")"
    ));
    assert!(err.contains("killed"), "{err}");
    let rows = eval(&format!("read_csv(\"{csv}\").len()"))
        .as_int()
        .unwrap();
    assert_eq!(rows, 2, "the two finished runs are on disk");
    let again = eval(&format!(
        "let ran = [];
         let runs = sweep({grid}, |run| {{ ran.push(run.n_features * 1000 + run.steps); #{{loss: 1.0 / run.steps}} }}, \"{csv}\");
         [runs.len(), ran.len(), read_csv(\"{csv}\").len()]"
    ))
    .into_typed_array::<i64>()
    .unwrap();
    assert_eq!(
        again,
        vec![4, 2, 4],
        "only the two unfinished runs run again"
    );
}

/// A small native sweep on toy data: two widths × two lengths, written to `csv`.
fn native_sweep(csv: &str, kind: &str) -> String {
    format!(
        "seed(3);
         let toy = superposition(#{{n_true: 64, d: 16, active: 2, tokens: 2048}});
         let held = superposition(#{{n_true: 64, d: 16, active: 2, tokens: 512}});
         sweep(#{{n_features: [32, 64], steps: [4, 8]}},
               #{{source: toy.x, held_out: held.x, csv: \"{csv}\", kind: \"{kind}\", k: 4,
                  batch_size: 128, lr: 3e-3, progress: false}})"
    )
}

#[test]
fn a_native_sweep_trains_one_sae_per_point_and_counts_its_compute() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sweep.csv").display().to_string();
    let runs = eval(&native_sweep(&csv, "topk"))
        .into_typed_array::<rhai::Map>()
        .unwrap();
    assert_eq!(runs.len(), 4);
    for run in &runs {
        let get = |k: &str| saelab::script::convert::number(&run[k]).unwrap();
        let (f, steps, tokens) = (get("n_features"), get("steps"), get("tokens"));
        assert_eq!(tokens, steps * 128.0);
        assert_eq!(
            get("compute"),
            6.0 * 16.0 * (f + 4.0) * tokens,
            "TopK FLOPs"
        );
        assert!(get("loss").is_finite() && get("l0") <= 4.0 + 1e-9);
        assert_eq!(run["kind"].to_string(), "topk");
    }
    let on_disk = eval(&format!("read_csv(\"{csv}\").len()"))
        .as_int()
        .unwrap();
    assert_eq!(on_disk, 4);
}

#[test]
fn a_native_sweep_rerun_skips_finished_runs_unless_settings_changed() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sweep.csv").display().to_string();
    let seconds = |script: &str| floats(&format!("{script}.map(|r| r.seconds)"));
    let first = seconds(&native_sweep(&csv, "topk"));
    // Finished runs come back from the CSV: the same timings, nothing retrained.
    assert_eq!(seconds(&native_sweep(&csv, "topk")), first);
    // Another architecture is another run, even at the same grid point.
    let relu = seconds(&native_sweep(&csv, "relu"));
    assert_ne!(relu, first);
    let rows = eval(&format!("read_csv(\"{csv}\").len()"))
        .as_int()
        .unwrap();
    assert_eq!(rows, 8);
}

#[test]
fn a_native_sweep_rejects_unknown_keys_and_missing_sources() {
    let err = eval_err("sweep(#{n_features: [8]}, #{csv: \"x.csv\"})");
    assert!(err.contains("give the activations"), "{err}");
    let err = eval_err("sweep(#{n_featurs: [8]}, #{source: randn([64, 4]), progress: false})");
    assert!(
        err.contains("unknown option or grid key 'n_featurs'"),
        "{err}"
    );
    let err =
        eval_err("sweep(#{n_features: [8], steps: [2]}, #{source: randn([64, 4]), batch_size: 0})");
    assert!(err.contains("batch_size"), "{err}");
}

/// An isoFLOP sweep of a known joint law L = 1 + 30/√F + 30/√S with
/// S = C / (100·F), whose optimum is F_opt = √C / 10.
const ISOFLOP_RUNS: &str = "
    let runs = [];
    for c in [1e6, 1e7, 1e8] {
        for f in [16, 32, 64, 128, 256, 512, 1024, 2048, 4096] {
            let s = c / (100.0 * f);
            runs.push(#{n_features: f, steps: s, compute: c, loss: 1.0 + 30.0 / f.to_float().sqrt() + 30.0 / s.sqrt()});
        }
    }
    let frontier = compute_frontier(runs, #{tolerance: 0.1});
";

#[test]
fn the_scaling_figures_and_summary_come_from_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let summary = eval(&format!(
        "import \"scaling\" as scaling;
         {ISOFLOP_RUNS}
         let fit = scaling::loss_vs_compute(runs, frontier, \"{out}/loss.png\");
         scaling::isoflop_curves(frontier, \"{out}/isoflop.png\");
         scaling::optimal_allocation(frontier, \"{out}/allocation.png\");
         scaling::summary(runs, frontier, fit)"
    ))
    .into_string()
    .unwrap();
    for name in ["loss.png", "isoflop.png", "allocation.png"] {
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{name}"
        );
    }
    // F_opt = √C / 10: 100, 316, 1000, the nearest widths on the grid being 128, 256 and 1024.
    assert!(summary.contains("| 1.0e8 | 1024 | 976.6 |"), "{summary}");
    assert!(summary.contains("| 1.0e6 | 128 | 78.13 |"), "{summary}");
    assert!(
        summary.contains("Every budget's optimum has a narrower and a wider run beside it."),
        "{summary}"
    );
}

#[test]
fn the_frontier_hands_back_each_buckets_runs() {
    let sizes = eval(&format!("{ISOFLOP_RUNS} frontier.buckets.map(|b| b.len())"))
        .into_typed_array::<i64>()
        .unwrap();
    assert_eq!(sizes, vec![9, 9, 9]);
}

#[test]
fn each_point_keeps_its_best_finite_rate_and_curves_come_by_budget() {
    // Two points, each tried at three rates; the highest rate of the first diverged.
    let picked = eval(
        "import \"scaling\" as scaling;
         let runs = [
             #{n_features: 64, steps: 100, compute: 1e9, lr: 0.001, loss: 5.0, diverged: false},
             #{n_features: 64, steps: 100, compute: 1e9, lr: 0.003, loss: 4.0, diverged: false},
             #{n_features: 64, steps: 100, compute: 1e9, lr: 0.01, loss: 1.0 / 0.0, diverged: true},
             #{n_features: 32, steps: 200, compute: 1e9, lr: 0.001, loss: 6.0, diverged: false},
             #{n_features: 32, steps: 200, compute: 1e9, lr: 0.003, loss: 7.0, diverged: false},
             #{n_features: 16, steps: 800, compute: 4e9, lr: 0.001, loss: 3.0, diverged: false},
         ];
         let best = scaling::best_per_point(runs);
         let curve = scaling::isoflop_curve(best, 1e9);
         [curve.map(|r| `${r.n_features}@${r.lr}`), scaling::lowest_loss(curve), best.len()]",
    )
    .into_array()
    .unwrap();
    let curve: Vec<String> = picked[0]
        .clone()
        .into_array()
        .unwrap()
        .into_iter()
        .map(|v| v.into_string().unwrap())
        .collect();
    assert_eq!(
        curve,
        ["32@0.001", "64@0.003"],
        "by width, each at its best finite rate"
    );
    assert_eq!(picked[1].as_int().unwrap(), 1);
    assert_eq!(picked[2].as_int().unwrap(), 3);
}

#[test]
fn the_scaling_study_script_runs_end_to_end_on_the_model() {
    // The study at toy size: a few thousand harvested tokens, three budgets.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let sets = [
        format!("out={out}"),
        "train_tokens=3000".into(),
        "heldout_tokens=1000".into(),
        "recycle_tokens=1000".into(),
        "batch=64".into(),
        "c_min=1e9".into(),
        "c_max=4e9".into(),
        "budgets=3".into(),
        "min_steps=5".into(),
        "min_width=256".into(),
        "lrs=1e-3,3e-3".into(),
        "seeds=2".into(),
    ];
    let stdout = crate::support::run_shipped("scripts/scaling_laws.rhai", &sets);
    for name in [
        "runs.csv",
        "recycled.csv",
        "seeds.csv",
        "loss_vs_compute.png",
        "isoflop.png",
        "allocation.png",
        "recycled.png",
        "SUMMARY.md",
    ] {
        assert!(dir.path().join(name).exists(), "{name} missing:\n{stdout}");
    }
    let summary = std::fs::read_to_string(dir.path().join("SUMMARY.md")).unwrap();
    for section in [
        "## What was run",
        "α_F = ",
        "α_S = ",
        "α_F > α_S ",
        "## Learning rates chosen",
        "## Does recycled data change the result?",
        "## Seed check",
    ] {
        assert!(summary.contains(section), "{section} missing:\n{summary}");
    }
    // What the study promises, read back from its CSVs: no run of the fit saw
    // a row twice; every budget's best point and its neighbours were tried at
    // several rates, with the rate kept strictly inside the ones tried; an
    // optimum at the edge of the widths is named in the summary with why.
    let checks = eval(&format!(
        "import \"scaling\" as scaling;
         let runs = read_csv(\"{out}/runs.csv\");
         let chosen = scaling::best_per_point(runs);
         let problems = [];
         for r in runs {{ if r.epochs > 1.0 {{ problems.push(`${{r.n_features}}/${{r.steps}}: ${{r.epochs}} passes`); }} }}
         for c in [1e9, 2e9, 4e9] {{
             let curve = scaling::isoflop_curve(chosen, c);
             let best = scaling::lowest_loss(curve);
             for j in max(0, best - 1)..=min(curve.len() - 1, best + 1) {{
                 let p = curve[j];
                 let rates = runs.filter(|r| r.n_features == p.n_features && r.steps == p.steps).map(|r| r.lr);
                 rates.sort();
                 if rates.len() < 3 || p.lr == rates[0] || p.lr == rates[rates.len() - 1] {{
                     problems.push(`${{p.n_features}}/${{p.steps}} at ${{c}}: rate ${{p.lr}} of ${{rates}}`);
                 }}
             }}
         }}
         let frontier = compute_frontier(chosen, #{{tolerance: 0.1, parabola: true}});
         let recycled = read_csv(\"{out}/recycled.csv\");
         let seeds = read_csv(\"{out}/seeds.csv\");
         [problems, frontier.points.filter(|p| !p.bracketed).len(),
          recycled.filter(|r| r.epochs > 1.0).len(), seeds.filter(|r| r.seed == 1).len()]"
    ))
    .into_array()
    .unwrap();
    let problems = checks[0].clone().into_array().unwrap();
    assert!(problems.is_empty(), "{problems:?}\n{summary}");
    let unbracketed = checks[1].as_int().unwrap() as usize;
    assert_eq!(
        summary.matches("FLOPs: the optimum is F = ").count(),
        unbracketed,
        "each unbracketed budget is named with its reason:\n{summary}"
    );
    assert!(
        checks[2].as_int().unwrap() > 0,
        "recycled runs see rows again:\n{summary}"
    );
    assert!(
        checks[3].as_int().unwrap() >= 3,
        "the seed check trains seed 1:\n{summary}"
    );
}

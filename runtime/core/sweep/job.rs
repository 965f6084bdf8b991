//! A sweep as a job ([`crate::executor`]): one task per grid point, each
//! writing its row to its own folder, and `collect` merging the rows into
//! the sweep's CSV exactly as a local sweep writes it.
use super::sae::{OpenSource, SweepSpec};
use super::{csv, finished_row, Cell, Row, Scalar};
use crate::activations::Store;
use crate::executor::{Executor, JobDir, JobSpec};
use crate::options::OptionMap;
use crate::sae::{ActivationSource, StoreSource};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The job kind in `job.json`.
pub const KIND: &str = "sweep";

/// What a sweep's tasks share, as `job.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepJob {
    /// The grid's points, task `i` running `points[i]`.
    pub points: Vec<Row<Scalar>>,
    /// The sweep's options (`csv`, `eval_tokens`, SAE and training options).
    pub options: OptionMap,
    /// The store each run trains on.
    pub source: PathBuf,
    /// The store runs are evaluated on, if not `source`.
    pub held_out: Option<PathBuf>,
}

/// Rows collected so far, and the points still without one.
#[derive(Debug, Clone)]
pub struct Collected {
    /// One row per finished point, in grid order.
    pub rows: Vec<Row<Scalar>>,
    /// Tasks (grid points) without a result yet.
    pub missing: Vec<usize>,
}

/// The job folder for a sweep over stores on disk: `dir`, or the CSV's name
/// with `.job` (`runs/sweep.csv` → `runs/sweep.job/`).
pub fn create(dir: Option<&Path>, sweep: SweepJob, executor: Executor) -> Result<JobDir> {
    let spec = SweepSpec::from_options(&sweep.options)?;
    let Some(csv) = &spec.csv else {
        return Err(Error::invalid(
            "sweep: an executor collects rows into the sweep's CSV: give `csv`",
        ));
    };
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| csv.with_extension("job"));
    let settings = serde_json::to_value(&sweep)
        .map_err(|e| Error::invalid(format!("sweep: cannot serialise the job: {e}")))?;
    JobDir::create(
        &dir,
        JobSpec {
            format: crate::executor::job::FORMAT,
            kind: KIND.into(),
            tasks: sweep.points.len(),
            settings,
            executor,
        },
    )
}

/// Runs grid point `index` of the sweep in `job`, its checkpoints in its
/// task folder, resuming from them.
pub fn run_task(job: &JobDir, index: usize, report: &mut dyn FnMut(&str)) -> Result<()> {
    let sweep: SweepJob = job.settings()?;
    let spec = SweepSpec::from_options(&sweep.options)?;
    let train = store_opener(&sweep.source)?;
    let held_out = sweep.held_out.as_deref().map(store_opener).transpose()?;
    job.run_task(index, |dir| {
        let point = &sweep.points[index];
        let row = spec.run_point(
            point,
            &train,
            held_out.as_ref().map(|open| open as &OpenSource),
            &dir.join("checkpoints"),
            report,
        )?;
        // Cells as the CSV spells them, so a collected CSV reads as a local one.
        let cells: serde_json::Map<String, serde_json::Value> = row
            .iter()
            .map(|(k, v)| (k.clone(), v.text().into()))
            .collect();
        Ok(cells.into())
    })
}

/// Opens a store on disk as a sweep's source, once for every run.
fn store_opener(path: &Path) -> Result<impl Fn(u64, bool) -> Result<Box<dyn ActivationSource>>> {
    let store = Rc::new(Store::open(path)?);
    Ok(move |seed, shuffle| -> Result<Box<dyn ActivationSource>> {
        Ok(Box::new(StoreSource::new(store.clone(), seed, shuffle)?))
    })
}

/// Merges the finished tasks' rows into the sweep's CSV, in grid order,
/// skipping points it already holds (as a resumed local sweep does). The CSV
/// is replaced atomically, and one collect runs at a time.
pub fn collect(job: &JobDir) -> Result<Collected> {
    let sweep: SweepJob = job.settings()?;
    let spec = SweepSpec::from_options(&sweep.options)?;
    let csv_path = spec
        .csv
        .clone()
        .ok_or_else(|| Error::invalid("sweep: the job has no csv to collect into"))?;
    let _lock = job.lock("collect")?;
    let mut rows: Vec<Row<Scalar>> = match csv_path.exists() {
        true => csv::read_rows(&csv_path)?,
        false => Vec::new(),
    };
    let before = rows.len();
    let mut collected = Collected {
        rows: Vec::new(),
        missing: Vec::new(),
    };
    for (index, point) in sweep.points.iter().enumerate() {
        let identified = spec.identify(point);
        if let Some(done) = finished_row(&rows, &identified) {
            collected.rows.push(done.clone());
            continue;
        }
        match job.result(index)? {
            Some(value) => {
                let row = row_of(index, &value)?;
                rows.push(row.clone());
                collected.rows.push(row);
            }
            None => collected.missing.push(index),
        }
    }
    if rows.len() > before {
        csv::write_rows(&csv_path, &rows)?;
    }
    Ok(collected)
}

/// A task's result: a map of CSV cells.
fn row_of(index: usize, value: &serde_json::Value) -> Result<Row<Scalar>> {
    let Some(map) = value.as_object() else {
        return Err(Error::invalid(format!(
            "task {index}'s result is not a row: delete it and resubmit to rerun the task"
        )));
    };
    Ok(map
        .iter()
        .map(|(k, v)| {
            let text = v
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| v.to_string());
            (k.clone(), Scalar::parse(&text))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::LocalOptions;

    #[test]
    fn collect_appends_finished_rows_in_grid_order_and_keeps_the_csv_whole() {
        let dir = tempfile::tempdir().unwrap();
        let csv_path = dir.path().join("runs.csv");
        let point = |n: i64| Row::from([("n_features".to_string(), Scalar::Int(n))]);
        let sweep = SweepJob {
            points: vec![point(8), point(16), point(32)],
            options: serde_json::json!({"csv": csv_path, "kind": "relu"})
                .as_object()
                .unwrap()
                .clone(),
            source: dir.path().join("store"),
            held_out: None,
        };
        let job = create(None, sweep, Executor::Local(LocalOptions::default())).unwrap();
        assert!(job.path.ends_with("runs.job"));
        let row = |n: i64, loss: &str| serde_json::json!({"kind": "relu", "n_features": n.to_string(), "loss": loss});
        job.run_task(2, |_| Ok(row(32, "0.5"))).unwrap();
        job.run_task(0, |_| Ok(row(8, "1.0"))).unwrap();
        let first = collect(&job).unwrap();
        assert_eq!(first.missing, [1]);
        let text = std::fs::read_to_string(&csv_path).unwrap();
        assert_eq!(text, "kind,loss,n_features\nrelu,1.0,8\nrelu,0.5,32\n");

        // A truncated row is an error and the CSV is left as it was.
        std::fs::create_dir_all(job.task_dir(1)).unwrap();
        std::fs::write(job.task_dir(1).join("result.json"), "{\"kind\": \"re").unwrap();
        let err = collect(&job).unwrap_err().to_string();
        assert!(err.contains("task 1's result"), "{err}");
        assert_eq!(std::fs::read_to_string(&csv_path).unwrap(), text);

        std::fs::remove_file(job.task_dir(1).join("result.json")).unwrap();
        job.run_task(1, |_| Ok(row(16, "0.75"))).unwrap();
        let all = collect(&job).unwrap();
        assert!(all.missing.is_empty());
        assert_eq!(all.rows[1]["loss"], Scalar::Float(0.75));
        let again = collect(&job).unwrap();
        assert_eq!(again.rows.len(), 3, "a second collect adds nothing twice");
        let lines = std::fs::read_to_string(&csv_path).unwrap().lines().count();
        assert_eq!(lines, 4);
    }
}

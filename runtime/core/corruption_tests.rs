//! Corrupted files for every reader (issue 14): truncations at every byte,
//! bit flips, header counts and sizes set to huge values, wrong dtypes and
//! shapes, mismatched files in one folder. Each must give an error naming
//! the file, never a panic or an abort, and no single allocation larger
//! than [`ALLOCATION_CAP`] (a reader that trusts a count in a header would
//! ask for terabytes); the counting allocator below sees every Rust
//! allocation of this test binary. Each suite prints how many files it
//! tried (`cargo test -p saelab-core corruption -- --nocapture`).
use crate::activations::npy::{self, Dtype};
use crate::activations::store::Store;
use crate::corpus::{Corpus, CorpusOptions};
use crate::model::gguf::testing::GgufWriter;
use crate::model::gguf::{GgmlType, GgufFile, MetadataValue};
use crate::sae::{checkpoint, Sae, SaeConfig};
use crate::sweep::{csv::read_rows, Scalar};
use crate::Result;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The largest allocation a reader may make for a file of a few KB.
const ALLOCATION_CAP: usize = 64 << 20;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// Passes every request to the system allocator, remembering the largest
/// one on this thread (a const thread-local: no allocation of its own).
pub struct LargestAllocation;

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        System.realloc(ptr, layout, new_size)
    }
}

/// Byte-level damage to a clean file: every truncation, a bit flip at
/// every byte (a different bit each), and all-ones 8-byte runs (huge
/// counts and sizes) at every 4-byte step of the first `header` bytes.
fn damaged(clean: &[u8], header: usize) -> Vec<(String, Vec<u8>)> {
    let mut cases = Vec::new();
    for len in 0..clean.len() {
        cases.push((format!("truncated to {len} bytes"), clean[..len].to_vec()));
    }
    for at in 0..clean.len() {
        let mut bytes = clean.to_vec();
        bytes[at] ^= 1 << (at % 8);
        cases.push((format!("bit {} of byte {at} flipped", at % 8), bytes));
    }
    for at in (0..header.min(clean.len())).step_by(4) {
        let mut bytes = clean.to_vec();
        let end = (at + 8).min(bytes.len());
        bytes[at..end].fill(0xff);
        cases.push((format!("0xff at bytes {at}..{end}"), bytes));
    }
    cases
}

/// Writes each case to `path`, reads it with `read`, and checks the
/// outcome; returns how many cases were tried.
fn suite(
    name: &str,
    path: &Path,
    cases: Vec<(String, Vec<u8>)>,
    read: impl Fn(&Path) -> Result<()>,
) -> usize {
    let file_name = path.file_name().unwrap().to_string_lossy().to_string();
    let (mut errors, mut ok) = (0, 0);
    for (what, bytes) in &cases {
        std::fs::write(path, bytes).unwrap();
        LARGEST.with(|l| l.set(0));
        let outcome = catch_unwind(AssertUnwindSafe(|| read(path)));
        let largest = LARGEST.with(|l| l.get());
        assert!(
            largest <= ALLOCATION_CAP,
            "{name}, {what}: allocated {largest} bytes"
        );
        match outcome {
            Err(_) => panic!("{name}, {what}: the reader panicked"),
            Ok(Err(err)) => {
                let message = err.to_string();
                assert!(message.contains(&file_name), "{name}, {what}: {message}");
                errors += 1;
            }
            Ok(Ok(())) => ok += 1,
        }
    }
    println!("{name}: {} corrupted files tried, {errors} clear errors naming the file, {ok} still readable", cases.len());
    cases.len()
}

fn npy_file(dir: &Path) -> Vec<u8> {
    let path = dir.join("clean.npy");
    let values: Vec<u8> = (0..24).flat_map(|i| (i as f32).to_le_bytes()).collect();
    npy::write(&path, Dtype::F32, &[6, 4], &values).unwrap();
    std::fs::read(&path).unwrap()
}

#[test]
fn corrupted_npy_shards_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let clean = npy_file(dir.path());
    let mut cases = damaged(&clean, 128);
    for header in [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6, 18446744073709551615), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6, 4, 1), }",
        "{'descr': '<u1', 'fortran_order': False, 'shape': (6, 4), }",
        "{'descr': '<f4', 'fortran_order': True, 'shape': (6, 4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6, -4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6, 0), }",
    ] {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16 + 1).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.push(b'\n');
        bytes.extend(&clean[clean.len() - 96..]);
        cases.push((format!("header {header}"), bytes));
    }
    let tried = suite("npy", &dir.path().join("shard.npy"), cases, |path| {
        let store = Store::open(path)?;
        if !store.is_empty() {
            let _ = store.batch(4)?;
        }
        Ok(())
    });
    assert!(tried > 400);
}

#[test]
fn corrupted_safetensors_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clean.safetensors");
    let t = crate::Tensor::from_f64(&[1.0; 12], &[3, 4], tch::Kind::Float).unwrap();
    crate::tensor_io::save_tensors(&path, &[("acts".into(), t)]).unwrap();
    let clean = std::fs::read(&path).unwrap();
    let mut cases = damaged(&clean, 16);
    let header =
        br#"{"acts":{"dtype":"F32","shape":[1000000000,1000000000],"data_offsets":[0,48]}}"#;
    let mut huge = (header.len() as u64).to_le_bytes().to_vec();
    huge.extend(header);
    huge.extend([0u8; 48]);
    cases.push(("a shape of 10^18 elements".into(), huge));
    let tried = suite(
        "safetensors",
        &dir.path().join("acts.safetensors"),
        cases,
        |path| {
            crate::tensor_io::load_tensors(path)?;
            Store::open(path).map(|_| ())
        },
    );
    assert!(tried > 200);
}

#[test]
fn corrupted_gguf_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let clean = GgufWriter::new()
        .kv(
            "general.architecture",
            MetadataValue::String("llama".into()),
        )
        .kv(
            "tokenizer.ggml.tokens",
            crate::model::gguf::testing::str_array(&["a", "b"]),
        )
        .tensor("w", &[2, 4], GgmlType::F32, data)
        .build();
    let cases = damaged(&clean, 256);
    let tried = suite("gguf", &dir.path().join("model.gguf"), cases, |path| {
        let file = GgufFile::open(path).map_err(crate::Error::from)?;
        for info in file.tensor_infos() {
            file.tensor_f32(&info.name)
                .map_err(|e| crate::Error::invalid(format!("{}: {e}", path.display())))?;
        }
        Ok(())
    });
    assert!(tried > 500);
}

#[test]
fn corrupted_sweep_csvs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let clean = b"l0,mse,tokens\n1.5,0.25,100\n2.0,0.125,200\n".to_vec();
    let mut cases = damaged(&clean, 0);
    cases.push(("bad UTF-8".into(), b"l0,mse\n\xff\xfe,1\n".to_vec()));
    cases.push((
        "a 4 MB line".into(),
        [b"l0\n".to_vec(), vec![b'9'; 4 << 20]].concat(),
    ));
    cases.push(("ragged rows".into(), b"a,b\n1\n1,2,3\n".to_vec()));
    cases.push(("empty".into(), Vec::new()));
    let tried = suite("sweep csv", &dir.path().join("runs.csv"), cases, |path| {
        read_rows::<Scalar>(path).map(|_| ())
    });
    assert!(tried > 50);
}

#[test]
fn corrupted_corpus_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let clean = b"{\"text\": \"hello world\"}\n{\"text\": \"second\"}\n".to_vec();
    let mut cases = damaged(&clean, 0);
    cases.push(("bad UTF-8".into(), b"{\"text\": \"\xff\xfe\"}\n".to_vec()));
    cases.push((
        "a 4 MB line".into(),
        [
            b"{\"text\": \"".to_vec(),
            vec![b'a'; 4 << 20],
            b"\"}\n".to_vec(),
        ]
        .concat(),
    ));
    cases.push(("empty".into(), Vec::new()));
    let path = dir.path().join("docs.jsonl");
    let tried = suite("corpus jsonl", &path, cases, |path| {
        let corpus = Corpus::from_paths(&[path.display().to_string()], CorpusOptions::default())?;
        let read = corpus.documents().try_for_each(|d| d.map(|_| ()));
        read
    });
    let text_cases = vec![
        ("bad UTF-8".to_string(), b"caf\xe9\n".to_vec()),
        ("empty".to_string(), Vec::new()),
    ];
    let text_tried = suite(
        "corpus txt",
        &dir.path().join("notes.txt"),
        text_cases,
        |path| {
            let corpus =
                Corpus::from_paths(&[path.display().to_string()], CorpusOptions::default())?;
            let read = corpus.documents().try_for_each(|d| d.map(|_| ()));
            read
        },
    );
    assert!(tried + text_tried > 80);
}

#[test]
fn corrupted_sae_folders_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("saved");
    let sae = Sae::new(SaeConfig::new("relu", 4, 8).unwrap()).unwrap();
    checkpoint::save(&sae, &saved, 1.0, None).unwrap();
    let other = dir.path().join("other");
    let wider = Sae::new(SaeConfig::new("relu", 4, 16).unwrap()).unwrap();
    checkpoint::save(&wider, &other, 1.0, None).unwrap();
    let work = dir.path().join("sae");
    let reset = || {
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        for entry in std::fs::read_dir(&saved).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), work.join(entry.file_name())).unwrap();
        }
    };
    let load = |_: &Path| checkpoint::load(&work, tch::Device::Cpu).map(|_| ());
    let mut tried = 0;
    for file in std::fs::read_dir(&saved).unwrap() {
        let name = file.unwrap().file_name();
        let clean = std::fs::read(saved.join(&name)).unwrap();
        reset();
        let header = if name.to_string_lossy().ends_with(".json") {
            0
        } else {
            16
        };
        let cases = damaged(&clean, header);
        tried += suite(
            &format!("sae {}", name.to_string_lossy()),
            &work.join(&name),
            cases,
            load,
        );
    }
    // Mismatched files in one folder: the weights of a wider SAE.
    reset();
    for file in std::fs::read_dir(&other).unwrap() {
        let name = file.unwrap().file_name();
        if name.to_string_lossy().ends_with(".safetensors") {
            let bytes = std::fs::read(other.join(&name)).unwrap();
            tried += suite(
                "sae mismatched weights",
                &work.join(&name),
                vec![("a wider SAE's weights".into(), bytes)],
                load,
            );
        }
    }
    assert!(tried > 500);
}

/// A harvest-layout store of `[6, 4]` and `[3, 4]` f32 shards over windows
/// of two tokens, written as a harvest writes it (row index, windows and
/// the manifest); `seed` varies the values so two stores differ.
fn write_store(dir: &Path, shard_rows: &[usize], seed: f32) {
    use crate::activations::store::{scale_for, Manifest, ShardInfo, FORMAT};
    std::fs::create_dir_all(dir).unwrap();
    let (dim, context) = (4usize, 2usize);
    let mut shards = Vec::new();
    let mut first_window = 0;
    for (i, &rows) in shard_rows.iter().enumerate() {
        let name = format!("shard-{i:05}");
        let path = |suffix: &str| dir.join(format!("{name}{suffix}"));
        let values: Vec<f32> = (0..rows * dim).map(|v| seed + v as f32 * 0.25).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        npy::write(&path(".npy"), Dtype::F32, &[rows, dim], &bytes).unwrap();
        let windows = rows.div_ceil(context);
        let meta: Vec<u8> = (0..rows)
            .flat_map(|r| {
                let window = first_window + r / context;
                [
                    r as i64,
                    0,
                    (window * context + r % context) as i64,
                    window as i64,
                    (r % context) as i64,
                ]
            })
            .flat_map(i64::to_le_bytes)
            .collect();
        npy::write(&path(".rows.npy"), Dtype::I64, &[rows, 5], &meta).unwrap();
        let tokens: Vec<u8> = (0..windows * context)
            .flat_map(|t| (t as i64).to_le_bytes())
            .collect();
        npy::write(
            &path(".windows.npy"),
            Dtype::I64,
            &[windows, context],
            &tokens,
        )
        .unwrap();
        let sum_squared_norm = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        shards.push(ShardInfo {
            name,
            rows,
            first_window,
            windows,
            sum_squared_norm,
            site_sum_squared_norms: Vec::new(),
        });
        first_window += windows;
    }
    let rows = shard_rows.iter().sum();
    let sum_squared_norm: f64 = shards.iter().map(|s| s.sum_squared_norm).sum();
    Manifest {
        format: FORMAT,
        model: "synthetic (1000 bytes)".into(),
        layer: 3,
        hook: "resid_post".into(),
        dim,
        dtype: "f32".into(),
        precision: "f32".into(),
        context,
        corpus: "synthetic".into(),
        excluded: String::new(),
        tokens_target: rows,
        windows_done: first_window,
        partial_rows: 0,
        rows,
        sum_squared_norm,
        scale: scale_for(dim, rows, sum_squared_norm),
        max_norm_ratio: None,
        dropped_rows: 0,
        complete: true,
        shards,
        sites: Vec::new(),
    }
    .write(dir)
    .unwrap();
}

/// A named change to a copy of a store's folder.
type StoreDamage = (String, Box<dyn Fn(&Path)>);

/// Everything a reader of a store does: open it, read every row and where
/// it came from, draw a batch, ask for its site.
fn read_store(dir: &Path) -> Result<()> {
    let store = Store::open(dir)?;
    for i in 0..store.len() {
        let _ = store.row_info(i)?;
    }
    let all: Vec<usize> = (0..store.len()).collect();
    let _ = store.rows(&all)?;
    if !store.is_empty() {
        let _ = store.batch(4)?;
    }
    if let Some(manifest) = store.manifest() {
        let _ = manifest.site()?;
    }
    Ok(())
}

/// Each case changes a fresh copy of the clean store (`damage` gets its
/// folder); the reader must then fail with an error naming the store's
/// folder (every file in it is named by its path there), or read it.
fn store_suite(name: &str, clean: &Path, work: &Path, cases: Vec<StoreDamage>) -> usize {
    let (mut errors, mut ok, mut failures, mut readable) = (0, 0, Vec::new(), Vec::new());
    for (what, damage) in &cases {
        let _ = std::fs::remove_dir_all(work);
        std::fs::create_dir_all(work).unwrap();
        for entry in std::fs::read_dir(clean).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), work.join(entry.file_name())).unwrap();
        }
        damage(work);
        LARGEST.with(|l| l.set(0));
        let outcome = catch_unwind(AssertUnwindSafe(|| read_store(work)));
        let largest = LARGEST.with(|l| l.get());
        assert!(
            largest <= ALLOCATION_CAP,
            "{name}, {what}: allocated {largest} bytes"
        );
        match outcome {
            Err(_) => failures.push(format!("{what}: the reader panicked")),
            Ok(Err(err)) => {
                let message = err.to_string();
                if !message.contains(&work.display().to_string()) {
                    failures.push(format!("{what}: {message}"));
                }
                errors += 1;
            }
            Ok(Ok(())) => {
                ok += 1;
                readable.push(what.as_str());
            }
        }
    }
    if readable.len() <= 12 {
        println!("{name}, still readable: {}", readable.join("; "));
    }
    // All the cases that fail, not only the first, to fix them together.
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
    println!("{name}: {} corrupted stores tried, {errors} clear errors naming the file, {ok} still readable", cases.len());
    cases.len()
}

#[test]
fn corrupted_store_manifests_and_shard_sets_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    write_store(&clean, &[6, 3], 0.5);
    read_store(&clean).unwrap();
    let other = dir.path().join("other");
    write_store(&other, &[4, 4, 2], 9.0);
    let wider = dir.path().join("wider");
    std::fs::create_dir_all(&wider).unwrap();
    let work = dir.path().join("store");
    let manifest = std::fs::read(clean.join("manifest.json")).unwrap();
    let text = String::from_utf8(manifest.clone()).unwrap();

    // Byte-level damage to manifest.json.
    let write = |bytes: Vec<u8>| -> Box<dyn Fn(&Path)> {
        Box::new(move |dir: &Path| std::fs::write(dir.join("manifest.json"), &bytes).unwrap())
    };
    let cases: Vec<StoreDamage> = damaged(&manifest, manifest.len())
        .into_iter()
        .map(|(what, bytes)| (what, write(bytes)))
        .collect();
    let mut tried = store_suite("store manifest.json", &clean, &work, cases);

    // Fields set to huge, negative, zero or wrong values, in the JSON.
    let mut cases: Vec<StoreDamage> = Vec::new();
    let edits = [
        ("\"rows\": 9,", "\"rows\": 18446744073709551615,"),
        ("\"rows\": 9,", "\"rows\": 1e300,"),
        ("\"rows\": 9,", "\"rows\": -9,"),
        ("\"rows\": 9,", "\"rows\": 10,"),
        ("\"rows\": 6,", "\"rows\": 4611686018427387904,"),
        ("\"rows\": 6,", "\"rows\": 0,"),
        ("\"rows\": 6,", "\"rows\": -6,"),
        ("\"rows\": 3,", "\"rows\": 4,"),
        ("\"dim\": 4,", "\"dim\": 18446744073709551615,"),
        ("\"dim\": 4,", "\"dim\": 0,"),
        ("\"dim\": 4,", "\"dim\": 5,"),
        ("\"dim\": 4,", "\"dim\": -4,"),
        (
            "\"first_window\": 3,",
            "\"first_window\": 18446744073709551615,",
        ),
        ("\"first_window\": 3,", "\"first_window\": 0,"),
        ("\"first_window\": 0,", "\"first_window\": 1,"),
        ("\"windows\": 3,", "\"windows\": 18446744073709551615,"),
        ("\"context\": 2,", "\"context\": 18446744073709551615,"),
        ("\"layer\": 3,", "\"layer\": 18446744073709551615,"),
        ("\"layer\": 3,", "\"layer\": -1,"),
        ("\"hook\": \"resid_post\"", "\"hook\": \"nowhere\""),
        ("\"format\": 1,", "\"format\": 4294967295,"),
        ("\"format\": 1,", "\"format\": 2,"),
        ("\"dtype\": \"f32\"", "\"dtype\": \"q4\""),
        ("\"scale\": ", "\"scale\": -1e308, \"was\": "),
        ("\"shard-00001\"", "\"shard-00000\""),
        ("\"shard-00001\"", "\"../other/shard-00001\""),
        ("\"shard-00001\"", "\"/etc/passwd\""),
        ("\"shard-00001\"", "\"\""),
        ("\"shards\": [", "\"shards\": 7, \"was\": ["),
        ("\"complete\": true", "\"complete\": \"yes\""),
    ];
    for (from, to) in edits {
        assert!(text.contains(from), "the clean manifest lacks {from}");
        let bytes = text.replacen(from, to, 1).into_bytes();
        cases.push((format!("{from} → {to}"), write(bytes)));
    }
    // The shard set: listed but missing, of the wrong shape, extra, mixed.
    let remove = |file: &'static str| -> Box<dyn Fn(&Path)> {
        Box::new(move |dir: &Path| std::fs::remove_file(dir.join(file)).unwrap())
    };
    for file in [
        "manifest.json",
        "shard-00000.npy",
        "shard-00001.npy",
        "shard-00001.rows.npy",
        "shard-00001.windows.npy",
    ] {
        cases.push((format!("{file} missing"), remove(file)));
    }
    let copy_from = |from: PathBuf, to: &'static str| -> Box<dyn Fn(&Path)> {
        Box::new(move |dir: &Path| {
            std::fs::copy(&from, dir.join(to)).unwrap();
        })
    };
    let reshaped =
        |name: &'static str, dtype: Dtype, shape: Vec<usize>, width: usize| -> Box<dyn Fn(&Path)> {
            Box::new(move |dir: &Path| {
                let count: usize = shape.iter().product();
                npy::write(&dir.join(name), dtype, &shape, &vec![0u8; count * width]).unwrap();
            })
        };
    cases.push((
        "shard 1 of another width".into(),
        reshaped("shard-00001.npy", Dtype::F32, vec![3, 5], 4),
    ));
    cases.push((
        "shard 1 with one row more".into(),
        reshaped("shard-00001.npy", Dtype::F32, vec![4, 4], 4),
    ));
    cases.push((
        "shard 1 with no rows".into(),
        reshaped("shard-00001.npy", Dtype::F32, vec![0, 4], 4),
    ));
    cases.push((
        "shard 1 in i64".into(),
        reshaped("shard-00001.npy", Dtype::I64, vec![3, 4], 8),
    ));
    cases.push((
        "shard 1 of three dimensions".into(),
        reshaped("shard-00001.npy", Dtype::F32, vec![3, 4, 1], 4),
    ));
    cases.push((
        "row index of another length".into(),
        reshaped("shard-00001.rows.npy", Dtype::I64, vec![2, 5], 8),
    ));
    cases.push((
        "row index in f32".into(),
        reshaped("shard-00001.rows.npy", Dtype::F32, vec![3, 5], 4),
    ));
    cases.push((
        "windows of another shape".into(),
        reshaped("shard-00001.windows.npy", Dtype::I64, vec![0, 2], 8),
    ));
    cases.push((
        "windows in f32".into(),
        reshaped("shard-00001.windows.npy", Dtype::F32, vec![2, 2], 4),
    ));
    cases.push((
        "row index pointing at huge and negative windows".into(),
        Box::new(|dir: &Path| {
            let meta: Vec<u8> = [i64::MAX, -1, i64::MIN, -1, i64::MAX]
                .repeat(3)
                .into_iter()
                .flat_map(i64::to_le_bytes)
                .collect();
            npy::write(
                &dir.join("shard-00001.rows.npy"),
                Dtype::I64,
                &[3, 5],
                &meta,
            )
            .unwrap();
        }),
    ));
    cases.push((
        "an extra unlisted shard".into(),
        copy_from(other.join("shard-00002.npy"), "shard-00002.npy"),
    ));
    cases.push((
        "shard 1 from another store".into(),
        copy_from(other.join("shard-00001.npy"), "shard-00001.npy"),
    ));
    cases.push((
        "the manifest of another store".into(),
        copy_from(other.join("manifest.json"), "manifest.json"),
    ));
    cases.push((
        "the manifest of an empty store".into(),
        Box::new(move |dir: &Path| {
            write_store(&wider, &[], 0.0);
            std::fs::copy(wider.join("manifest.json"), dir.join("manifest.json")).unwrap();
        }),
    ));
    tried += store_suite("store shard set", &clean, &work, cases);
    assert!(tried > 1000);
}

#[test]
fn a_manifest_naming_shards_outside_its_folder_or_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    write_store(&store, &[6, 3], 0.5);
    write_store(&dir.path().join("other"), &[6, 3], 9.0);
    let text = std::fs::read_to_string(store.join("manifest.json")).unwrap();
    for (name, why) in [
        ("../other/shard-00001", "outside its folder"),
        ("/tmp/shard-00001", "outside its folder"),
        ("shard-00000", "twice"),
    ] {
        let edited = text.replacen("\"shard-00001\"", &format!("\"{name}\""), 1);
        std::fs::write(store.join("manifest.json"), edited).unwrap();
        let err = read_store(&store).unwrap_err().to_string();
        assert!(
            err.contains(why) && err.contains("manifest.json"),
            "{name}: {err}"
        );
    }
}

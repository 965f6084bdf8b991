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
use std::path::Path;

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

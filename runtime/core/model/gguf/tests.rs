//! Reader tests: metadata, tensor placement, truncation and corruption,
//! and the real SmolLM2 file when it is cached.
use super::testing::{assert_dequantises, cached_smollm2, open, str_array, GgufWriter, Lcg};
use super::*;
use half::{bf16, f16};
use MetadataValue as V;

#[test]
fn metadata_round_trips_every_value_type() {
    let values = [
        ("u8", V::U8(200)),
        ("i8", V::I8(-5)),
        ("u16", V::U16(60000)),
        ("i16", V::I16(-300)),
        ("u32", V::U32(4_000_000_000)),
        ("i32", V::I32(-70000)),
        ("u64", V::U64(1 << 40)),
        ("i64", V::I64(-(1 << 40))),
        ("f32", V::F32(1.5)),
        ("f64", V::F64(-2.25)),
        ("bool", V::Bool(true)),
        ("string", V::String("héllo".into())),
        ("array", V::Array(vec![V::I32(1), V::I32(-2)])),
        (
            "nested",
            V::Array(vec![str_array(&["a"]), str_array(&["b", "c"])]),
        ),
        ("empty", V::Array(vec![])),
    ];
    let writer = values
        .iter()
        .fold(GgufWriter::new(), |w, (k, v)| w.kv(k, v.clone()));
    let file = open(&writer);
    for (key, value) in &values {
        assert_eq!(file.metadata(key), Some(value), "{key}");
    }
    let keys: Vec<_> = file.metadata_entries().map(|(k, _)| k).collect();
    assert_eq!(keys, values.iter().map(|(k, _)| *k).collect::<Vec<_>>());
    assert_eq!(file.metadata("absent"), None);
}

#[test]
fn typed_getters_accept_any_integer_width_and_name_the_key_on_mismatch() {
    let file = open(
        &GgufWriter::new()
            .kv("u8", V::U8(7))
            .kv("i64", V::I64(30))
            .kv("neg", V::I32(-1))
            .kv("big", V::U64(1 << 40))
            .kv("f32", V::F32(1e-5))
            .kv("f64", V::F64(100000.0))
            .kv("name", V::String("llama".into()))
            .kv("tokens", str_array(&["a", "b"]))
            .kv("types", V::Array(vec![V::I32(1), V::I32(3)])),
    );
    assert_eq!(file.get_u32("u8").unwrap(), 7);
    assert_eq!(file.get_u32("i64").unwrap(), 30);
    assert_eq!(file.get_u64("big").unwrap(), 1 << 40);
    assert_eq!(file.get_i64("neg").unwrap(), -1);
    assert_eq!(file.get_f32("f32").unwrap(), 1e-5);
    assert_eq!(file.get_f32("f64").unwrap(), 100000.0);
    assert_eq!(file.get_str("name").unwrap(), "llama");
    assert_eq!(file.get_str_array("tokens").unwrap(), ["a", "b"]);
    assert_eq!(file.get_i64_array("types").unwrap(), [1, 3]);
    for (key, message) in [
        (
            "neg",
            "\"neg\" holds i32 -1, expected an integer that fits in u32",
        ),
        (
            "big",
            "\"big\" holds u64 1099511627776, expected an integer that fits in u32",
        ),
        (
            "name",
            "\"name\" holds a string, expected an integer that fits in u32",
        ),
    ] {
        assert!(
            file.get_u32(key).unwrap_err().to_string().contains(message),
            "{key}"
        );
    }
    let err = file.get_str_array("types").unwrap_err().to_string();
    assert!(err.contains("\"types\" holds an array of i32"), "{err}");
    let err = file.get_bool("missing").unwrap_err().to_string();
    assert_eq!(err, "GGUF metadata key \"missing\" is missing");
}

#[test]
fn float_tensors_read_back_with_row_major_shape() {
    let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
    let f32_bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f16_bytes = values
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16_bytes = values
        .iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect();
    let f64_bytes: Vec<u8> = values
        .iter()
        .flat_map(|&v| (v as f64).to_le_bytes())
        .collect();
    assert_dequantises(GgmlType::F32, &[3, 2], f32_bytes, &values);
    assert_dequantises(GgmlType::F16, &[3, 2], f16_bytes, &values);
    assert_dequantises(GgmlType::BF16, &[6], bf16_bytes, &values);
    let file = open(&GgufWriter::new().tensor("t", &[6], GgmlType::F64, f64_bytes));
    assert!(matches!(
        file.tensor_f32("t"),
        Err(GgufError::UnsupportedType { .. })
    ));
}

#[test]
fn tensors_are_found_at_their_aligned_offsets() {
    for alignment in [32u32, 64, 256] {
        let a: Vec<u8> = [1.0f32, 2.0, 3.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b: Vec<u8> = [4.0f32, 5.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let file = open(
            &GgufWriter::new()
                .kv("general.alignment", V::U32(alignment))
                .tensor("a", &[3], GgmlType::F32, a)
                .tensor("b", &[2], GgmlType::F32, b),
        );
        assert_eq!(file.alignment(), alignment as u64);
        assert_eq!(file.tensor_f32("a").unwrap().1, [1.0, 2.0, 3.0]);
        assert_eq!(file.tensor_f32("b").unwrap().1, [4.0, 5.0]);
        assert_eq!(file.tensor_info("b").unwrap().offset, alignment as u64);
    }
}

fn small_file() -> Vec<u8> {
    let data: Vec<u8> = (0..8u8).collect();
    GgufWriter::new()
        .kv("general.architecture", V::String("llama".into()))
        .kv("list", V::Array(vec![V::U32(1), V::U32(2)]))
        .tensor("w", &[2], GgmlType::F32, data)
        .build()
}

fn error_of(bytes: Vec<u8>) -> String {
    GgufFile::from_bytes(bytes).unwrap_err().to_string()
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = small_file();
    for len in 0..bytes.len() {
        assert!(
            GgufFile::from_bytes(bytes[..len].to_vec()).is_err(),
            "prefix of {len} bytes"
        );
    }
    let err = error_of(bytes[..30].to_vec());
    assert!(
        err.contains("truncated GGUF file: metadata key #0"),
        "{err}"
    );
}

#[test]
fn random_corruption_never_panics() {
    let clean = small_file();
    let mut rng = Lcg(3);
    for _ in 0..5000 {
        let mut bytes = clean.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len() as u32) as usize;
            bytes[at] = rng.below(256) as u8;
        }
        if let Ok(file) = GgufFile::from_bytes(bytes) {
            for info in file.tensor_infos() {
                let _ = file.tensor_f32(&info.name);
            }
        }
    }
}

#[test]
fn header_errors_say_what_is_wrong() {
    assert!(
        error_of(b"GGML\x03\0\0\0".to_vec()).contains("not a GGUF file: it starts with \"GGML\"")
    );
    assert!(error_of(Vec::new()).contains("not a GGUF file"));
    let mut bytes = small_file();
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(error_of(bytes.clone()).contains("GGUF version 1 is not supported"));
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert_eq!(error_of(bytes), "big-endian GGUF files are not supported");
    let mut v2 = GgufWriter::new();
    v2.version = 2;
    assert_eq!(GgufFile::from_bytes(v2.build()).unwrap().version(), 2);
}

#[test]
fn oversized_lengths_are_corrupt_not_allocations() {
    // The first key's length is the u64 right after the 24-byte header.
    let mut bytes = small_file();
    bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(error_of(bytes).contains("metadata key #0 needs 18446744073709551615 bytes"));

    let array = GgufWriter::new()
        .kv("list", V::Array(vec![V::U8(1)]))
        .build();
    let len_at = array.len() - 9; // element count precedes the one element
    let mut bytes = array.clone();
    bytes[len_at..len_at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    let err = error_of(bytes);
    assert!(
        err.contains("metadata key \"list\": array of 9223372036854775807 elements"),
        "{err}"
    );
}

#[test]
fn bad_tensor_infos_name_the_tensor() {
    let f32s = |n: usize| vec![0u8; 4 * n];
    let cases = [
        (
            GgufWriter::new().tensor("huge", &[u64::MAX, 2], GgmlType::F32, f32s(1)),
            "tensor \"huge\": dims",
        ),
        (
            GgufWriter::new().tensor("5d", &[1, 1, 1, 1, 1], GgmlType::F32, f32s(1)),
            "tensor \"5d\": 5 dimensions",
        ),
        (
            GgufWriter::new().tensor("odd", &[31], GgmlType::Q8_0, vec![0; 34]),
            "row length 31 is not a multiple",
        ),
        (
            GgufWriter::new().tensor("long", &[64], GgmlType::F32, f32s(8)),
            "tensor \"long\": its 256 bytes",
        ),
        (
            GgufWriter::new()
                .tensor("d", &[1], GgmlType::F32, f32s(1))
                .tensor("d", &[1], GgmlType::F32, f32s(1)),
            "tensor \"d\": the name appears twice",
        ),
        (
            GgufWriter::new().kv("general.alignment", V::U32(48)),
            "\"general.alignment\": U32(48) is not a power of two",
        ),
        (
            GgufWriter::new().kv("k", V::U8(1)).kv("k", V::U8(2)),
            "metadata key \"k\": the key appears twice",
        ),
    ];
    for (writer, message) in cases {
        let err = error_of(writer.build());
        assert!(err.contains(message), "{err:?} lacks {message:?}");
    }
}

#[test]
fn an_empty_tensor_in_a_file_cut_before_its_data_section_is_an_error() {
    // 24-byte header + 33-byte info for a one-letter name ends at 57; the
    // data section would start at 64.
    let mut bytes = GgufWriter::new()
        .tensor("e", &[0], GgmlType::F32, vec![])
        .build();
    bytes.truncate(57);
    let file = GgufFile::from_bytes(bytes).unwrap();
    let err = file.tensor_f32("e").unwrap_err().to_string();
    assert!(
        err.contains("tensor \"e\": its 0 bytes at data offset 0 run past"),
        "{err}"
    );
}

#[test]
fn tensor_lookups_fail_clearly() {
    let file = open(
        &GgufWriter::new()
            .tensor("iq", &[256], GgmlType::IQ2_XXS, vec![0; 66])
            .tensor("new", &[4], GgmlType::Unknown(99), vec![]),
    );
    let err = file.tensor_f32("iq").unwrap_err().to_string();
    assert_eq!(
        err,
        "tensor \"iq\" has type IQ2_XXS, which saelab cannot dequantise"
    );
    let err = file.tensor_f32("new").unwrap_err().to_string();
    assert!(err.contains("unknown ggml type 99"), "{err}");
    assert_eq!(
        file.tensor_f32("nope").unwrap_err().to_string(),
        "no tensor named \"nope\" in the GGUF file"
    );
}

/// First elements of two tensors of the SmolLM2 file, dequantised by
/// gguf-py 0.19's numpy code (an independent implementation).
const REF_EMBED_0: f32 = -0.106_544_495; // token_embd.weight, Q8_0
const REF_ATTN_Q_0: f32 = -0.096_313_48; // blk.0.attn_q.weight, Q4_1

#[test]
fn smollm2_metadata_and_tensors_match_the_model_card() {
    let Some(path) = cached_smollm2() else { return };
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.get_str("general.architecture").unwrap(), "llama");
    let config = [
        ("llama.block_count", 30),
        ("llama.embedding_length", 576),
        ("llama.feed_forward_length", 1536),
        ("llama.attention.head_count", 9),
        ("llama.attention.head_count_kv", 3),
        ("llama.vocab_size", 49152),
    ];
    for (key, value) in config {
        assert_eq!(file.get_u32(key).unwrap(), value, "{key}");
    }
    assert_eq!(file.get_f32("llama.rope.freq_base").unwrap(), 100000.0);
    assert_eq!(
        file.get_f32("llama.attention.layer_norm_rms_epsilon")
            .unwrap(),
        1e-5
    );
    assert_eq!(
        file.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );

    let infos = file.tensor_infos();
    assert_eq!(infos.len(), 272);
    let count = |ty| infos.iter().filter(|i| i.ggml_type == ty).count();
    assert_eq!(
        (
            count(GgmlType::Q4_1),
            count(GgmlType::F32),
            count(GgmlType::Q8_0)
        ),
        (210, 61, 1)
    );

    let (shape, embedding) = file.tensor_f32("token_embd.weight").unwrap();
    assert_eq!(shape, [49152, 576]);
    assert!(embedding.iter().all(|v| v.is_finite()));
    // Reference values from gguf-py's numpy dequantisation of the same file.
    let (_, q) = file.tensor_f32("blk.0.attn_q.weight").unwrap();
    for (got, want) in [(embedding[0], REF_EMBED_0), (q[0], REF_ATTN_Q_0)] {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    assert_eq!(file.tensor_f32("output_norm.weight").unwrap().0, [576]);
}

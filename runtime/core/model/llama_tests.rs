//! The llama forward on a tiny random model built in memory (no model file):
//! the RoPE layout, padding, the KV cache, early stopping, hooks and errors.
//! Agreement with an independent implementation on the real SmolLM2 is
//! pinned in `tests/model.rs`.
use super::*;
use crate::model::gguf::testing::{GgufWriter, Lcg};
use crate::model::gguf::{GgmlType, MetadataValue as V};
use crate::model::hooks::Edit;

const D: usize = 16;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const MLP: usize = 24;
const VOCAB: usize = 40;
const LAYERS: usize = 2;

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A random llama of two blocks whose metadata claims an MLP of `d_mlp`
/// (the tensors always have `MLP`), so a mismatch can be tested.
fn tiny_gguf(d_mlp: usize) -> GgufFile {
    let mut rng = Lcg(3);
    let mut writer = GgufWriter::new()
        .kv("general.architecture", V::String("llama".into()))
        .kv("llama.block_count", V::U32(LAYERS as u32))
        .kv("llama.embedding_length", V::U32(D as u32))
        .kv("llama.feed_forward_length", V::U32(d_mlp as u32))
        .kv("llama.attention.head_count", V::U32(HEADS as u32))
        .kv("llama.attention.head_count_kv", V::U32(KV_HEADS as u32))
        .kv("llama.rope.freq_base", V::F32(10_000.0))
        .kv("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5))
        .kv("llama.context_length", V::U32(64))
        .kv("llama.vocab_size", V::U32(VOCAB as u32));
    let kv = KV_HEADS * D / HEADS;
    let mut matrix = |writer: GgufWriter, name: &str, rows: usize, cols: usize| {
        let values: Vec<f32> = rng.floats(rows * cols).iter().map(|v| v * 0.3).collect();
        writer.tensor(
            name,
            &[cols as u64, rows as u64],
            GgmlType::F32,
            f32_bytes(&values),
        )
    };
    writer = matrix(writer, "token_embd.weight", VOCAB, D);
    for i in 0..LAYERS {
        for (name, rows, cols) in [
            ("attn_q", D, D),
            ("attn_k", kv, D),
            ("attn_v", kv, D),
            ("attn_output", D, D),
            ("ffn_gate", MLP, D),
            ("ffn_up", MLP, D),
            ("ffn_down", D, MLP),
        ] {
            writer = matrix(writer, &format!("blk.{i}.{name}.weight"), rows, cols);
        }
        for norm in ["attn_norm", "ffn_norm"] {
            let ones = f32_bytes(&[1.0; D]);
            writer = writer.tensor(
                &format!("blk.{i}.{norm}.weight"),
                &[D as u64],
                GgmlType::F32,
                ones,
            );
        }
    }
    let ones = f32_bytes(&[1.0; D]);
    writer = writer.tensor("output_norm.weight", &[D as u64], GgmlType::F32, ones);
    GgufFile::from_bytes(writer.build()).unwrap()
}

fn tiny() -> Llama {
    Llama::load(&tiny_gguf(MLP), Device::Cpu, Precision::F32).unwrap()
}

fn logits(llama: &Llama, batch: &Batch) -> Tensor {
    llama
        .forward(batch, &Hooks::default(), Logits::All, None)
        .unwrap()
        .logits
        .unwrap()
}

fn assert_close(a: &Tensor, b: &Tensor) {
    let diff = a.f_sub(b).unwrap().abs().max().double_value(&[]);
    assert!(diff < 1e-5, "tensors differ by {diff}");
}

#[test]
fn undoing_llama_cpp_permutation_matches_ggml_adjacent_pair_rope() {
    let (n_heads, head_dim, d_in, t) = (2i64, 8i64, 5i64, 6i64);
    let mut rng = Lcg(5);
    let w_hf = Tensor::from_slice(&rng.floats((n_heads * head_dim * d_in) as usize))
        .reshape([n_heads * head_dim, d_in]);
    // convert_hf_to_gguf.py, LlamaModel.permute:
    // w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(w.shape)
    let w_gguf = w_hf
        .reshape([n_heads, 2, head_dim / 2, d_in])
        .transpose(1, 2)
        .reshape([n_heads * head_dim, d_in]);
    assert_close(
        &unpermute_rope_rows(&w_gguf, n_heads as usize).unwrap(),
        &w_hf,
    );

    // ggml's RoPE (mode NORM, what llama.cpp runs on these rows) rotates
    // adjacent pairs (2i, 2i+1) by pos * base^(-2i/d); written out by hand.
    let base = 10_000f64;
    let x = Tensor::from_slice(&rng.floats((t * d_in) as usize)).reshape([t, d_in]);
    let q_gguf = Vec::<f32>::try_from(x.matmul(&w_gguf.tr()).reshape([-1])).unwrap();
    let width = (n_heads * head_dim) as usize;
    let mut ggml = q_gguf.clone();
    for pos in 0..t as usize {
        for h in 0..n_heads as usize {
            for i in 0..head_dim as usize / 2 {
                let theta = pos as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
                let at = pos * width + h * head_dim as usize + 2 * i;
                let (a, b) = (q_gguf[at] as f64, q_gguf[at + 1] as f64);
                ggml[at] = (a * theta.cos() - b * theta.sin()) as f32;
                ggml[at + 1] = (a * theta.sin() + b * theta.cos()) as f32;
            }
        }
    }

    // saelab: unpermuted rows, rotate_half RoPE.
    let cfg = Config {
        n_layers: 1,
        d_model: width,
        d_mlp: 1,
        n_heads: n_heads as usize,
        n_kv_heads: n_heads as usize,
        head_dim: head_dim as usize,
        rope_base: base,
        rms_eps: 1e-5,
        vocab_size: 1,
        context_length: 16,
    };
    let rope = Rope::new(&cfg, Device::Cpu).unwrap();
    let q = x
        .matmul(&unpermute_rope_rows(&w_gguf, n_heads as usize).unwrap().tr())
        .reshape([1, t, n_heads, head_dim])
        .transpose(1, 2);
    let positions = Tensor::arange(t, (Kind::Int64, Device::Cpu)).unsqueeze(0);
    let ours = rope.apply(&q, &positions).unwrap(); // [1, heads, t, head_dim]
                                                    // Our element (h, i) / (h, i + d/2) is ggml's (h, 2i) / (h, 2i + 1): the
                                                    // same vectors up to one fixed permutation shared by Q and K, so every
                                                    // attention score q·k is the same.
    for pos in 0..t {
        for h in 0..n_heads {
            for i in 0..head_dim / 2 {
                for (ours_dim, ggml_dim) in [(i, 2 * i), (i + head_dim / 2, 2 * i + 1)] {
                    let got = ours.double_value(&[0, h, pos, ours_dim]);
                    let want =
                        ggml[(pos * n_heads * head_dim + h * head_dim + ggml_dim) as usize] as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "pos {pos} head {h} dim {i}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn padded_batches_match_single_sequences() {
    let llama = tiny();
    let (long, short) = (vec![3u32, 7, 1, 9, 4], vec![5u32, 2, 8]);
    let single_long = logits(&llama, &Batch::single(&long).unwrap());
    let single_short = logits(&llama, &Batch::single(&short).unwrap());
    let sequences = [long.clone(), short.clone()];

    let right = logits(&llama, &Batch::pad(&sequences, 0, Padding::Right).unwrap());
    assert_close(&right.get(0), &single_long.get(0));
    assert_close(&right.get(1).narrow(0, 0, 3), &single_short.get(0));

    let left = logits(&llama, &Batch::pad(&sequences, 0, Padding::Left).unwrap());
    assert_close(&left.get(0), &single_long.get(0));
    assert_close(&left.get(1).narrow(0, 2, 3), &single_short.get(0));
}

#[test]
fn kv_cache_steps_match_a_full_forward() {
    let llama = tiny();
    let sequences = [vec![3u32, 7, 1, 9, 4, 6], vec![5u32, 2, 8, 11]];
    for padding in [Padding::Left, Padding::Right] {
        // Left padding is how batches generate; right padding only matters
        // for the prompt, so check the cache against it for one sequence.
        let rows = if padding == Padding::Left {
            &sequences[..]
        } else {
            &sequences[..1]
        };
        let full = logits(&llama, &Batch::pad(rows, 0, padding).unwrap());
        let prompt: Vec<Vec<u32>> = rows.iter().map(|s| s[..s.len() - 3].to_vec()).collect();
        let mut cache = KvCache::new(LAYERS);
        let out = llama
            .forward(
                &Batch::pad(&prompt, 0, padding).unwrap(),
                &Hooks::default(),
                Logits::Last,
                Some(&mut cache),
            )
            .unwrap();
        let t = full.size()[1];
        assert_close(&out.logits.unwrap(), &full.select(1, t - 4));
        for step in 0..3 {
            let next: Vec<Vec<u32>> = rows.iter().map(|s| vec![s[s.len() - 3 + step]]).collect();
            let out = llama
                .forward(
                    &Batch::pad(&next, 0, padding).unwrap(),
                    &Hooks::default(),
                    Logits::Last,
                    Some(&mut cache),
                )
                .unwrap();
            assert_close(&out.logits.unwrap(), &full.select(1, t - 3 + step as i64));
        }
        assert_eq!(cache.len(), t);
    }
}

#[test]
fn stopping_early_reads_the_same_activations_as_a_full_pass() {
    let llama = tiny();
    let batch = Batch::single(&[1, 2, 3, 4]).unwrap();
    let sites = [Site::resid_pre(1), Site::mlp(0), Site::resid_post(0)];
    let hooks = Hooks::reading(&sites);
    let early = llama.forward(&batch, &hooks, Logits::Skip, None).unwrap();
    let full = llama.forward(&batch, &hooks, Logits::All, None).unwrap();
    assert!(early.logits.is_none());
    for (a, b) in early.activations.iter().zip(&full.activations) {
        assert_close(a, b);
    }
    assert_eq!(early.activations[1].size(), [1, 4, MLP as i64]);
    assert_close(&early.activations[0], &early.activations[2]);
    let last = Hooks::reading(&[Site::resid_pre(LAYERS)]);
    let out = llama.forward(&batch, &last, Logits::Skip, None).unwrap();
    assert_eq!(out.activations[0].size(), [1, 4, D as i64]);
}

#[test]
fn edits_steer_the_output_and_neutral_edits_do_not() {
    let llama = tiny();
    let batch = Batch::single(&[1, 2, 3]).unwrap();
    let plain = logits(&llama, &batch);
    let run = |hooks: Hooks| {
        llama
            .forward(&batch, &hooks, Logits::All, None)
            .unwrap()
            .logits
            .unwrap()
    };
    let zero = Tensor::zeros([D as i64], (Kind::Float, Device::Cpu));
    assert_close(
        &run(Hooks::default().edit(Site::resid_pre(1), Edit::Add(zero))),
        &plain,
    );
    let identity = Edit::Map(Box::new(|x| Ok(x.shallow_clone())));
    assert_close(&run(Hooks::default().edit(Site::mlp(0), identity)), &plain);
    let push = Tensor::ones([D as i64], (Kind::Float, Device::Cpu))
        .f_mul_scalar(5.0)
        .unwrap();
    let steered = run(Hooks::default().edit(Site::resid_pre(1), Edit::Add(push)));
    assert!(steered.f_sub(&plain).unwrap().abs().max().double_value(&[]) > 1e-2);
}

#[test]
fn another_architecture_is_refused_by_name() {
    let gpt2 = GgufWriter::new().kv("general.architecture", V::String("gpt2".into()));
    let gguf = GgufFile::from_bytes(gpt2.build()).unwrap();
    let err = Llama::load(&gguf, Device::Cpu, Precision::F32)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("architecture 'gpt2' is not supported"),
        "{err}"
    );
}

#[test]
fn a_tensor_of_the_wrong_shape_is_named() {
    let gguf = tiny_gguf(MLP + 8);
    let err = Llama::load(&gguf, Device::Cpu, Precision::F32)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tensor blk.0.ffn_gate.weight has shape [24, 16]"),
        "{err}"
    );
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let llama = tiny();
    let too_long: Vec<u32> = (0..65).map(|i| i % VOCAB as u32).collect();
    let err = llama
        .forward(
            &Batch::single(&too_long).unwrap(),
            &Hooks::default(),
            Logits::Last,
            None,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("exceed the model's context of 64"),
        "{err}"
    );
    let err = llama
        .forward(
            &Batch::single(&[1]).unwrap(),
            &Hooks::reading(&[Site::mlp(2)]),
            Logits::Skip,
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("layer 2 is out of range"), "{err}");
    assert!(Batch::single(&[]).is_err());
    let err = llama
        .forward(
            &Batch::single(&[VOCAB as u32]).unwrap(),
            &Hooks::default(),
            Logits::Last,
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("token id 40"), "{err}");
}

#[test]
fn bf16_matrices_stay_close_to_f32_and_hand_back_f32() {
    let f32_model = tiny();
    let bf16_model = Llama::load(&tiny_gguf(MLP), Device::Cpu, Precision::Bf16).unwrap();
    let batch = Batch::pad(&[vec![3u32, 7, 1, 9], vec![5u32, 2]], 0, Padding::Left).unwrap();
    let sites = [Site::mlp(0), Site::mlp_out(1), Site::resid_post(1)];
    let hooks = Hooks::reading(&sites).edit(
        Site::mlp(1),
        Edit::Map(Box::new(|x| {
            // Edits see f32 neurons even though the MLP computes in bf16.
            assert_eq!(x.kind(), Kind::Float);
            Ok(x.shallow_clone())
        })),
    );
    let exact = f32_model
        .forward(&batch, &hooks, Logits::All, None)
        .unwrap();
    let rounded = bf16_model
        .forward(&batch, &hooks, Logits::All, None)
        .unwrap();
    let pairs = exact.activations.iter().zip(&rounded.activations).chain([(
        exact.logits.as_ref().unwrap(),
        rounded.logits.as_ref().unwrap(),
    )]);
    for (a, b) in pairs {
        assert_eq!(b.kind(), Kind::Float);
        let error = a.f_sub(b).unwrap().norm().double_value(&[]) / a.norm().double_value(&[]);
        // bf16 keeps 8 bits of mantissa: a relative rounding of 2⁻⁹ per input.
        assert!(error > 0.0 && error < 2e-2, "relative error {error}");
    }
}

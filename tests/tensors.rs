//! Numeric checks of the tensor bindings against known values.
use crate::support::{assert_close, eval, eval_err, float, floats};

#[test]
fn gradient_of_sum_of_squares_is_twice_x() {
    let diff = float(
        "let x = tensor([1.0, -2.0, 3.5]).requires_grad();
         (x * x).sum().backward();
         (x.grad - x * 2.0).abs().max().item()",
    );
    assert_eq!(diff, 0.0);
}

#[test]
fn matmul_of_known_matrices() {
    let values = floats("(tensor([[1.0, 2.0], [3.0, 4.0]]) @ tensor([[5.0, 6.0], [7.0, 8.0]])).flatten().to_array()");
    assert_eq!(values, vec![19.0, 22.0, 43.0, 50.0]);
    let method = floats("tensor([[1.0, 2.0]]).matmul(tensor([[3.0], [4.0]])).flatten().to_array()");
    assert_eq!(method, vec![11.0]);
}

#[test]
fn matmul_binds_like_multiplication() {
    // `a @ b + c` must be `(a @ b) + c`, as in Python.
    let values = floats("(eye(2) @ tensor([[1.0, 2.0], [3.0, 4.0]]) + 1).flatten().to_array()");
    assert_eq!(values, vec![2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn softmax_rows_sum_to_one() {
    let sums = floats("randn([5, 7]).softmax(1).sum(1).to_array()");
    assert_close(&sums, &[1.0; 5], 1e-6);
    let log = float(
        "let x = randn([3, 4]); (x.log_softmax(-1).exp() - x.softmax(-1)).abs().max().item()",
    );
    assert!(log < 1e-6);
}

#[test]
fn topk_returns_largest_values_and_their_indices() {
    let result = eval(
        "let r = tensor([3.0, 9.0, 1.0, 7.0]).topk(2); [r.values.to_array(), r.indices.to_array()]",
    );
    let parts = result.into_array().unwrap();
    assert_eq!(
        parts[0].clone().into_typed_array::<f64>().unwrap(),
        vec![9.0, 7.0]
    );
    assert_eq!(
        parts[1].clone().into_typed_array::<i64>().unwrap(),
        vec![1, 3]
    );
}

#[test]
fn arithmetic_broadcasts_with_numbers_on_either_side() {
    let values = floats("let x = tensor([1.0, 2.0]); [(x + 1).sum().item(), (1 - x).sum().item(), (2 * x).sum().item(), (2.0 / x).sum().item(), (x ** 2).sum().item(), (-x).sum().item()]");
    assert_eq!(values, vec![5.0, -1.0, 6.0, 3.0, 5.0, -3.0]);
    let broadcast = floats("(ones([2, 3]) + tensor([1.0, 2.0, 3.0])).sum(0).to_array()");
    assert_eq!(broadcast, vec![4.0, 6.0, 8.0]);
}

#[test]
fn comparisons_give_bool_tensors_usable_as_masks() {
    let result =
        eval("let x = tensor([-1.0, 2.0, -3.0, 4.0]); let m = x > 0; [m.dtype, x[m].to_array()]");
    let parts = result.into_array().unwrap();
    assert_eq!(parts[0].clone().into_string().unwrap(), "bool");
    assert_eq!(
        parts[1].clone().into_typed_array::<f64>().unwrap(),
        vec![2.0, 4.0]
    );
}

#[test]
fn a_mask_over_rows_selects_rows_and_a_wrong_mask_is_an_error() {
    let rows = eval(
        "let x = tensor([[1.0, 2.0], [30.0, 40.0], [5.0, 6.0]]); x[x.norm(1, false) < 10.0].shape",
    )
    .into_typed_array::<i64>()
    .unwrap();
    assert_eq!(rows, vec![2, 2]);
    let err = eval_err("let x = zeros([3, 2]); x[tensor([true, false])]");
    assert!(err.contains("shape") || err.contains("size"), "{err}");
}

#[test]
fn reductions_over_all_and_over_a_dimension() {
    let x = "let x = tensor([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]]);";
    assert_eq!(float(&format!("{x} x.sum().item()")), 21.0);
    assert_eq!(floats(&format!("{x} x.max(1).to_array()")), vec![5.0, 6.0]);
    assert_eq!(
        eval(&format!("{x} x.argmax(1).to_array()"))
            .into_typed_array::<i64>()
            .unwrap(),
        vec![1, 2]
    );
    assert_eq!(
        floats(&format!("{x} x.mean(0).to_array()")),
        vec![2.5, 3.5, 4.5]
    );
    assert_eq!(
        eval(&format!("{x} x.sum(1, true).shape"))
            .into_typed_array::<i64>()
            .unwrap(),
        vec![2, 1]
    );
    assert_close(
        &floats(&format!("{x} x.norm(1).to_array()")),
        &[35f64.sqrt(), 56f64.sqrt()],
        1e-5,
    );
    assert!((float(&format!("{x} x.variance().item()")) - 3.5).abs() < 1e-5);
}

#[test]
fn shapes_transform_as_in_torch() {
    let shape = |s: &str| eval(s).into_typed_array::<i64>().unwrap();
    assert_eq!(
        shape("zeros([2, 3, 4]).permute([2, 0, 1]).shape"),
        vec![4, 2, 3]
    );
    assert_eq!(shape("zeros([2, 3]).t().shape"), vec![3, 2]);
    assert_eq!(shape("zeros([2, 3]).unsqueeze(0).shape"), vec![1, 2, 3]);
    assert_eq!(shape("zeros([1, 3, 1]).squeeze().shape"), vec![3]);
    assert_eq!(
        shape("cat([zeros([2, 3]), ones([1, 3])], 0).shape"),
        vec![3, 3]
    );
    assert_eq!(shape("stack([zeros([3]), ones([3])], 0).shape"), vec![2, 3]);
    assert_eq!(shape("arange(10).slice(0, 2, 5).shape"), vec![3]);
    assert_eq!(
        floats("arange(6).reshape([2, 3]).to_dtype(\"f32\")[-1].to_array()"),
        vec![3.0, 4.0, 5.0]
    );
    assert_eq!(
        floats("linspace(0, 1, 5).index_select(0, [4, 0]).to_array()"),
        vec![1.0, 0.0]
    );
}

#[test]
fn constructors_and_properties() {
    assert_eq!(
        eval("arange(2, 5).to_array()")
            .into_typed_array::<i64>()
            .unwrap(),
        vec![2, 3, 4]
    );
    assert_eq!(
        floats("linspace(0.0, 1.0, 3).to_array()"),
        vec![0.0, 0.5, 1.0]
    );
    assert_eq!(float("eye(3).sum().item()"), 3.0);
    assert_eq!(float("full([2, 2], 0.5).sum().item()"), 2.0);
    assert_eq!(
        eval("zeros([2], #{dtype: \"f64\"}).dtype")
            .into_string()
            .unwrap(),
        "f64"
    );
    assert_eq!(eval("tensor([1, 2]).dtype").into_string().unwrap(), "i64");
    assert_eq!(eval("ones([4, 5]).numel").as_int().unwrap(), 20);
    assert_eq!(eval("ones([1]).device").into_string().unwrap(), "cpu");
    let best = eval("device()").into_string().unwrap();
    assert!(best == "cpu" || best == "cuda");
}

#[test]
fn seeds_make_random_tensors_repeat() {
    let same = float(
        "seed(7); let a = randn([16]); seed(7); let b = randn([16]); (a - b).abs().max().item()",
    );
    assert_eq!(same, 0.0);
}

#[test]
fn adam_trains_a_linear_regression() {
    let loss = float(
        "seed(0);
         let x = randn([256, 3]);
         let y = x @ tensor([[1.0], [-2.0], [0.5]]) + 0.3;
         let w = zeros([3, 1]).requires_grad();
         let b = zeros([1]).requires_grad();
         let opt = adam([w, b], #{lr: 0.05, betas: [0.9, 0.999]});
         let loss = 0.0;
         for step in 0..400 {
             opt.zero_grad();
             let l = ((x @ w + b - y) ** 2).mean();
             l.backward();
             clip_grad_norm([w, b], 10.0);
             opt.step();
             loss = l.item();
         }
         loss",
    );
    assert!(loss < 1e-4, "loss {loss}");
}

#[test]
fn no_grad_closures_record_no_graph() {
    let tracked = eval("let w = ones([2]).requires_grad(); no_grad(|| (w * 2).sum()).to_string()");
    assert!(!tracked.into_string().unwrap().contains("requires_grad"));
}

#[test]
fn safetensors_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.safetensors").display().to_string();
    let diff = float(&format!(
        "let a = randn([4, 3]); save_tensors(\"{path}\", #{{a: a, b: arange(3)}});
         let t = load_tensors(\"{path}\"); (t.a - a).abs().max().item() + (t.b - arange(3)).abs().sum().item()"
    ));
    assert_eq!(diff, 0.0);
}

#[test]
fn stdlib_modules_import_from_anywhere() {
    assert_eq!(
        float("import \"stats\" as stats; stats::median([3, 1, 2])"),
        2.0
    );
    let cos = float(
        "import \"nn\" as nn; let a = randn([4, 8]); nn::cosine_similarity(a, a).diag_mean()"
            .replace(".diag_mean()", "[0][0].item()")
            .as_str(),
    );
    assert!((cos - 1.0).abs() < 1e-5);
}

#[test]
fn tensors_print_with_shape_dtype_and_device() {
    let text = eval("tensor([[1.0, 2.0], [3.0, 4.0]]).to_string()")
        .into_string()
        .unwrap();
    assert!(
        text.contains("shape=[2, 2], dtype=f32, device=cpu"),
        "{text}"
    );
    assert!(text.starts_with("tensor([[1., 2.],"), "{text}");
}

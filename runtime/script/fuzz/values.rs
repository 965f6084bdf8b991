//! Argument expressions for generated programs: plausible values, hostile
//! ones of the right type (zero, negative and huge sizes, NaN and infinity,
//! strange devices and dtypes, out-of-range indices, option maps with
//! unknown keys or wrong types), and values of the wrong type.
use super::grammar::Kind;
use super::rng::Rng;

/// Integers: sizes, dims, indices, layers, seeds.
const INTS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "-1",
    "-2",
    "7",
    "64",
    "1000",
    "1048576",
    "2147483648",
    "1099511627776",
    "9223372036854775807",
    "(-9223372036854775807 - 1)",
];

/// Floats; `NAN`, `INF` and `NEG_INF` are constants in every program's scope.
const FLOATS: &[&str] = &[
    "0.0", "1.0", "-1.0", "0.5", "1e-12", "1e300", "-1e300", "NAN", "INF", "NEG_INF", "3.0",
];

/// Devices, dtypes, kinds, text, and paths inside the program's sandbox
/// folder (which holds the fixture files the runner makes).
const STRINGS: &[&str] = &[
    "",
    "cpu",
    "cuda",
    "cuda:3",
    "mps",
    "meta",
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "int64",
    "bool",
    "uint8",
    "relu",
    "topk",
    "jumprelu",
    "batchtopk",
    "matryoshka",
    "nonsense",
    "mean",
    "sum",
    "x",
    "é🙂 text",
    "the quick brown fox\n",
    "text.txt",
    "empty.txt",
    "corrupt.bin",
    "t.safetensors",
    "runs.csv",
    "sae_dir",
    "out.png",
    "out.svg",
    "out.csv",
    "out.html",
    "x.npy",
    "missing/dir/x.png",
    ".",
    "sub/",
    "/dev/null",
    "blocks.0.hook_resid_post",
];

/// Tensors: ordinary, empty, scalar, integer, half, NaN, requiring grad.
const TENSORS: &[&str] = &[
    "randn([2, 3])",
    "randn([4, 4])",
    "randn([3])",
    "ones([1])",
    "zeros([0])",
    "zeros([0, 4])",
    "zeros([3, 0])",
    "tensor(3.0)",
    "tensor([[1.0, 2.0], [3.0, 4.0]])",
    "arange(5)",
    "randn([1, 1, 1, 1])",
    "randn([16, 4])",
    "randn([3]).requires_grad()",
    "(randn([2, 2]).requires_grad() * 2.0)",
    "(zeros([3]).log() * 0.0)",
    "zeros([2]).log()",
    "ones([2, 3]).to_dtype(\"float16\")",
    "ones([4]).to_dtype(\"int64\")",
    "ones([2]).to_dtype(\"bool\")",
];

/// Constructors of the custom types the fuzzer can make on its own.
fn objects(name: &str) -> &'static [&'static str] {
    match name {
        "Tensor" => TENSORS,
        "Sae" => &[
            "sae(#{d_in: 4, n_features: 8})",
            "sae(#{d_in: 4, n_features: 8, kind: \"topk\", k: 2})",
            "sae(#{d_in: 3, n_features: 6, kind: \"jumprelu\"})",
            "sae(#{d_in: 4, n_features: 16, kind: \"matryoshka\", k: 2})",
            "load_sae(\"sae_dir\")",
        ],
        "Store" => &[
            "store_from_tensor(randn([16, 4]))",
            "store_from_tensor(zeros([0, 4]))",
            "store_from_tensor(randn([5, 3]))",
            "open_store(\"t.safetensors\")",
        ],
        "Figure" => &[
            "figure()",
            "figure(#{title: \"t\", log_x: true, log_y: true})",
        ],
        "Corpus" => &[
            "corpus([\"text.txt\"])",
            "corpus([\"empty.txt\", \"text.txt\"])",
        ],
        "Optimizer" => &[
            "adam([randn([2]).requires_grad()])",
            "sgd([randn([3]).requires_grad()], #{lr: 0.1})",
        ],
        "Model" => &["model"],
        _ => &[],
    }
}

/// Keys option maps use across the API, and some no function knows.
const OPTION_KEYS: &[&str] = &[
    "d_in",
    "n_features",
    "kind",
    "k",
    "l1",
    "device",
    "dtype",
    "steps",
    "lr",
    "batch_size",
    "seed",
    "layer",
    "layers",
    "site",
    "threshold",
    "title",
    "x_label",
    "y_label",
    "log_x",
    "log_y",
    "width",
    "height",
    "bins",
    "label",
    "color",
    "n",
    "max_tokens",
    "top_k",
    "shuffle",
    "window",
    "stride",
    "max_windows",
    "normalize",
    "hook_name",
    "matryoshka_widths",
    "min_x",
    "quantiles",
    "bogus",
    "",
];

/// An expression of `kind`. `variables` are the program's earlier results
/// of that kind, which are used half of the time.
pub fn argument(rng: &mut Rng, kind: &Kind, variables: &[String], depth: u32) -> String {
    if !variables.is_empty() && rng.chance(0.5) {
        return rng.pick(variables).clone();
    }
    if rng.chance(0.04) {
        // The wrong type on purpose.
        return any_value(rng, depth);
    }
    // Plausible values more often than not, so calls get past their checks
    // and later statements get something to work on.
    let plausible = rng.chance(0.6);
    match kind {
        Kind::Int if plausible => rng.pick(&["0", "1", "2", "3", "4"]).to_string(),
        Kind::Int => rng.pick(INTS).to_string(),
        Kind::Float if plausible => rng.pick(&["0.5", "1.0", "2.0", "0.1"]).to_string(),
        Kind::Float => rng.pick(FLOATS).to_string(),
        Kind::Array if plausible => rng
            .pick(&[
                "[2, 3]",
                "[3]",
                "[4]",
                "[0, 1]",
                "[1.0, 2.0, 3.0, 4.0]",
                "[4, 4]",
            ])
            .to_string(),
        Kind::Bool => rng.pick(&["true", "false"]).to_string(),
        Kind::Str => format!("{:?}", rng.pick(STRINGS)),
        Kind::Array => array(rng, depth),
        Kind::Map => option_map(rng, depth),
        Kind::FnPtr => rng.pick(CLOSURES).to_string(),
        Kind::Any => any_value(rng, depth),
        Kind::Object(name) => object(rng, name).unwrap_or_else(|| any_value(rng, depth)),
    }
}

/// A constructor of the custom type `name`, if the fuzzer knows one.
pub fn object(rng: &mut Rng, name: &str) -> Option<String> {
    let choices = objects(name);
    (!choices.is_empty()).then(|| rng.pick(choices).to_string())
}

/// Whether the fuzzer can make a value of `kind` without earlier results.
pub fn can_make(kind: &Kind) -> bool {
    match kind {
        Kind::Object(name) => !objects(name).is_empty(),
        _ => true,
    }
}

const CLOSURES: &[&str] = &[
    "|x| x",
    "|| 1",
    "|x| x * 2.0",
    "|| randn([2]).sum()",
    "|x| x.backward()",
    "Fn(\"no_such_function\")",
];

fn any_value(rng: &mut Rng, depth: u32) -> String {
    let kinds = [
        Kind::Int,
        Kind::Float,
        Kind::Bool,
        Kind::Str,
        Kind::Array,
        Kind::Map,
        Kind::Object("Tensor".into()),
    ];
    match rng.below(10) {
        0 => "()".to_string(),
        _ if depth > 1 => rng.pick(INTS).to_string(),
        _ => {
            let kind = rng.pick(&kinds).clone();
            argument(rng, &kind, &[], depth + 1)
        }
    }
}

/// Shapes, lists of numbers, indices, ragged and mixed arrays, lists of tensors.
fn array(rng: &mut Rng, depth: u32) -> String {
    const ARRAYS: &[&str] = &[
        "[]",
        "[0]",
        "[-1]",
        "[2, 3]",
        "[3]",
        "[4]",
        "[16, 4]",
        "[1, 1, 1, 1, 1, 1, 1, 1, 1]",
        "[1099511627776]",
        "[1048576, 1048576]",
        "[2, -3]",
        "[1.5]",
        "[\"a\"]",
        "[[1.0, 2.0], [3.0]]",
        "[1, \"x\"]",
        "[NAN]",
        "[INF, NEG_INF]",
        "[0, 1, 2]",
        "[-1, 5, 100]",
        "[true]",
        "[1.0, 2.0, 3.0, 4.0]",
        "[1.0, 1.0]",
        "[0.0, -1.0]",
        "[#{l0: 1.0, mse: 0.5}, #{l0: 2.0}]",
        "[[]]",
    ];
    if depth < 2 && rng.chance(0.25) {
        let n = rng.below(4);
        let items: Vec<String> = (0..n)
            .map(|_| argument(rng, &Kind::Object("Tensor".into()), &[], depth + 1))
            .collect();
        return format!("[{}]", items.join(", "));
    }
    rng.pick(ARRAYS).to_string()
}

/// `#{}` or a few keys from `OPTION_KEYS` with values of any type.
fn option_map(rng: &mut Rng, depth: u32) -> String {
    let n = rng.below(4);
    let mut keys: Vec<&str> = (0..n).map(|_| *rng.pick(OPTION_KEYS)).collect();
    // A key twice is a parse error, which would hide the call.
    keys.sort_unstable();
    keys.dedup();
    let entries: Vec<String> = keys
        .into_iter()
        .map(|key| {
            let value = if depth > 1 {
                rng.pick(INTS).to_string()
            } else {
                match rng.below(4) {
                    0 => rng.pick(INTS).to_string(),
                    1 => rng.pick(FLOATS).to_string(),
                    2 => format!("{:?}", rng.pick(STRINGS)),
                    _ => any_value(rng, depth + 1),
                }
            };
            format!("{}: {value}", quote_key(key))
        })
        .collect();
    format!("#{{{}}}", entries.join(", "))
}

/// Map keys that are not identifiers are written as strings.
fn quote_key(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_alphanumeric() || c == '_') {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

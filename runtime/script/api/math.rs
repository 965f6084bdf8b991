//! Arithmetic and comparison operators (tensor ⊕ tensor, tensor ⊕ number,
//! number ⊕ tensor, with broadcasting), `@` for matrix products,
//! elementwise functions and reductions.
use crate::core::scalar_op::scalar_op;
use crate::core::Tensor;
use crate::script::error::{OrScriptError, ScriptResult};
use rhai::plugin::*;
use rhai::{FuncRegistration, Module, FLOAT, INT};
use tch::TchError;

type TorchResult = Result<tch::Tensor, TchError>;
type TensorTensor = fn(&tch::Tensor, &tch::Tensor) -> TorchResult;
type TensorScalar = fn(&tch::Tensor, f64) -> TorchResult;
type ScalarTensor = fn(f64, &tch::Tensor) -> TorchResult;

/// One binary operator in its three forms.
struct BinaryOp {
    name: &'static str,
    tensor_tensor: TensorTensor,
    tensor_scalar: TensorScalar,
    scalar_tensor: ScalarTensor,
}

fn binary_ops() -> Vec<BinaryOp> {
    fn op(name: &'static str, tt: TensorTensor, ts: TensorScalar, st: ScalarTensor) -> BinaryOp {
        BinaryOp {
            name,
            tensor_tensor: tt,
            tensor_scalar: ts,
            scalar_tensor: st,
        }
    }
    vec![
        op(
            "+",
            |a, b| a.f_add(b),
            |a, s| a.f_add_scalar(s),
            |s, b| b.f_add_scalar(s),
        ),
        op(
            "-",
            |a, b| a.f_sub(b),
            |a, s| a.f_sub_scalar(s),
            |s, b| b.f_rsub_scalar(s),
        ),
        op(
            "*",
            |a, b| a.f_mul(b),
            |a, s| a.f_mul_scalar(s),
            |s, b| b.f_mul_scalar(s),
        ),
        op(
            "/",
            |a, b| a.f_div(b),
            |a, s| a.f_div_scalar(s),
            |s, b| b.f_reciprocal()?.f_mul_scalar(s),
        ),
        op(
            "**",
            |a, b| a.f_pow(b),
            |a, s| a.f_pow_tensor_scalar(s),
            tch::Tensor::f_pow_scalar,
        ),
        op(
            ">",
            |a, b| a.f_gt_tensor(b),
            |a, s| a.f_gt(s),
            |s, b| b.f_lt(s),
        ),
        op(
            "<",
            |a, b| a.f_lt_tensor(b),
            |a, s| a.f_lt(s),
            |s, b| b.f_gt(s),
        ),
        op(
            ">=",
            |a, b| a.f_ge_tensor(b),
            |a, s| a.f_ge(s),
            |s, b| b.f_le(s),
        ),
        op(
            "<=",
            |a, b| a.f_le_tensor(b),
            |a, s| a.f_le(s),
            |s, b| b.f_ge(s),
        ),
        op(
            "==",
            |a, b| a.f_eq_tensor(b),
            |a, s| a.f_eq(s),
            |s, b| b.f_eq(s),
        ),
        op(
            "!=",
            |a, b| a.f_ne_tensor(b),
            |a, s| a.f_ne(s),
            |s, b| b.f_ne(s),
        ),
    ]
}

fn wrap(result: TorchResult) -> ScriptResult<Tensor> {
    result.map(Tensor::new).or_script_error()
}

/// The math topic: the plugin functions plus every operator overload.
pub fn module() -> Module {
    let mut module = exported_module!(math_api);
    for op in binary_ops() {
        let (tt, ts, st) = (op.tensor_tensor, op.tensor_scalar, op.scalar_tensor);
        let reg = || FuncRegistration::new(op.name);
        reg().set_into_module(&mut module, move |a: Tensor, b: Tensor| {
            wrap(tt(a.inner(), b.inner()))
        });
        reg().set_into_module(&mut module, move |a: Tensor, s: FLOAT| {
            wrap(scalar_op(|| ts(a.inner(), s)))
        });
        reg().set_into_module(&mut module, move |a: Tensor, s: INT| {
            wrap(scalar_op(|| ts(a.inner(), s as f64)))
        });
        reg().set_into_module(&mut module, move |s: FLOAT, b: Tensor| {
            wrap(scalar_op(|| st(s, b.inner())))
        });
        reg().set_into_module(&mut module, move |s: INT, b: Tensor| {
            wrap(scalar_op(|| st(s as f64, b.inner())))
        });
    }
    FuncRegistration::new("-").set_into_module(&mut module, |a: Tensor| wrap(a.inner().f_neg()));
    FuncRegistration::new("@")
        .with_comments(["/// Matrix product (Python's `@`). `let y = x @ w;`"])
        .set_into_module(&mut module, |a: Tensor, b: Tensor| {
            wrap(a.inner().f_matmul(b.inner()))
        });
    module
}

/// The reductions scripts can ask for, over everything or one dimension.
#[derive(Clone, Copy)]
pub enum Reduction {
    Sum,
    Mean,
    Max,
    Min,
    ArgMax,
    ArgMin,
    Norm,
    Var,
    Std,
}

/// Applies a reduction; `dim = None` reduces over all elements.
pub fn reduce(t: &Tensor, how: Reduction, dim: Option<i64>, keepdim: bool) -> ScriptResult<Tensor> {
    let x = t.inner();
    let none = None::<tch::Kind>;
    let result = scalar_op(|| match (how, dim) {
        (Reduction::Sum, None) => x.f_sum(none),
        (Reduction::Sum, Some(d)) => x.f_sum_dim_intlist([d].as_slice(), keepdim, none),
        (Reduction::Mean, None) => x.f_mean(none),
        (Reduction::Mean, Some(d)) => x.f_mean_dim([d].as_slice(), keepdim, none),
        (Reduction::Max, None) => x.f_max(),
        (Reduction::Max, Some(d)) => x.f_max_dim(d, keepdim).map(|(values, _)| values),
        (Reduction::Min, None) => x.f_min(),
        (Reduction::Min, Some(d)) => x.f_min_dim(d, keepdim).map(|(values, _)| values),
        (Reduction::ArgMax, d) => x.f_argmax(d, keepdim),
        (Reduction::ArgMin, d) => x.f_argmin(d, keepdim),
        (Reduction::Norm, None) => x.f_norm(),
        (Reduction::Norm, Some(d)) => x.f_norm_scalaropt_dim(2.0, [d].as_slice(), keepdim),
        (Reduction::Var, None) => x.f_var(true),
        (Reduction::Var, Some(d)) => x.f_var_dim([d].as_slice(), true, keepdim),
        (Reduction::Std, None) => x.f_std(true),
        (Reduction::Std, Some(d)) => x.f_std_dim([d].as_slice(), true, keepdim),
    });
    wrap(result)
}

#[export_module]
pub mod math_api {
    use super::{reduce, wrap, Reduction};
    use crate::script::error::{runtime_error, ScriptResult};
    use rhai::{Dynamic, Map, FLOAT, INT};

    pub type Tensor = crate::core::Tensor;

    /// Matrix product. `x.matmul(w)` (same as `x @ w`)
    #[rhai_fn(pure, return_raw)]
    pub fn matmul(a: &mut Tensor, b: Tensor) -> ScriptResult<Tensor> {
        wrap(a.inner().f_matmul(b.inner()))
    }

    /// max(x, 0) elementwise. `x.relu()`
    #[rhai_fn(pure, return_raw)]
    pub fn relu(t: &mut Tensor) -> ScriptResult<Tensor> {
        wrap(t.inner().f_relu())
    }

    /// e^x elementwise.
    #[rhai_fn(pure, return_raw)]
    pub fn exp(t: &mut Tensor) -> ScriptResult<Tensor> {
        wrap(t.inner().f_exp())
    }

    /// Natural logarithm elementwise.
    #[rhai_fn(pure, return_raw)]
    pub fn log(t: &mut Tensor) -> ScriptResult<Tensor> {
        wrap(t.inner().f_log())
    }

    /// Square root elementwise.
    #[rhai_fn(pure, return_raw)]
    pub fn sqrt(t: &mut Tensor) -> ScriptResult<Tensor> {
        wrap(t.inner().f_sqrt())
    }

    /// Absolute value elementwise.
    #[rhai_fn(pure, return_raw)]
    pub fn abs(t: &mut Tensor) -> ScriptResult<Tensor> {
        wrap(t.inner().f_abs())
    }

    /// Logistic sigmoid elementwise.
    #[rhai_fn(pure, return_raw)]
    pub fn sigmoid(t: &mut Tensor) -> ScriptResult<Tensor> {
        wrap(t.inner().f_sigmoid())
    }

    /// Hyperbolic tangent elementwise.
    #[rhai_fn(pure, return_raw)]
    pub fn tanh(t: &mut Tensor) -> ScriptResult<Tensor> {
        wrap(t.inner().f_tanh())
    }

    /// x^e elementwise. `x.pow(2.0)`
    #[rhai_fn(pure, return_raw)]
    pub fn pow(t: &mut Tensor, exponent: FLOAT) -> ScriptResult<Tensor> {
        wrap(scalar_op(|| t.inner().f_pow_tensor_scalar(exponent)))
    }

    /// x^e elementwise with an integer exponent. `x.pow(2)`
    #[rhai_fn(name = "pow", pure, return_raw)]
    pub fn pow_int(t: &mut Tensor, exponent: INT) -> ScriptResult<Tensor> {
        wrap(scalar_op(|| t.inner().f_pow_tensor_scalar(exponent)))
    }

    /// Limits values to [min, max]. `x.clamp(-1.0, 1.0)`
    #[rhai_fn(pure, return_raw)]
    pub fn clamp(t: &mut Tensor, min: FLOAT, max: FLOAT) -> ScriptResult<Tensor> {
        if min > max {
            return Err(runtime_error(format!(
                "clamp: min {min} is greater than max {max}"
            )));
        }
        wrap(scalar_op(|| t.inner().f_clamp(min, max)))
    }

    /// Limits values to [min, max] with integer bounds. `x.clamp(0, 10)`
    #[rhai_fn(name = "clamp", pure, return_raw)]
    pub fn clamp_int(t: &mut Tensor, min: INT, max: INT) -> ScriptResult<Tensor> {
        clamp(t, min as FLOAT, max as FLOAT)
    }

    /// Limits values from below only. `x.clamp_min(0.0)`
    #[rhai_fn(pure, return_raw)]
    pub fn clamp_min(t: &mut Tensor, min: FLOAT) -> ScriptResult<Tensor> {
        wrap(scalar_op(|| t.inner().f_clamp_min(min)))
    }

    /// Softmax along a dimension (rows sum to 1). `logits.softmax(-1)`
    #[rhai_fn(pure, return_raw)]
    pub fn softmax(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        wrap(t.inner().f_softmax(dim, None::<tch::Kind>))
    }

    /// Log-softmax along a dimension. `logits.log_softmax(-1)`
    #[rhai_fn(pure, return_raw)]
    pub fn log_softmax(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        wrap(t.inner().f_log_softmax(dim, None::<tch::Kind>))
    }

    /// Sum of all elements. `x.sum()`
    #[rhai_fn(pure, return_raw)]
    pub fn sum(t: &mut Tensor) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Sum, None, false)
    }
    /// Sum over a dimension. `x.sum(1)`
    #[rhai_fn(name = "sum", pure, return_raw)]
    pub fn sum_dim(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Sum, Some(dim), false)
    }
    /// Sum over a dimension, keeping it with size 1. `x.sum(1, true)`
    #[rhai_fn(name = "sum", pure, return_raw)]
    pub fn sum_keep(t: &mut Tensor, dim: INT, keepdim: bool) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Sum, Some(dim), keepdim)
    }

    /// Mean of all elements. `x.mean()`
    #[rhai_fn(pure, return_raw)]
    pub fn mean(t: &mut Tensor) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Mean, None, false)
    }
    /// Mean over a dimension. `x.mean(0)`
    #[rhai_fn(name = "mean", pure, return_raw)]
    pub fn mean_dim(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Mean, Some(dim), false)
    }
    /// Mean over a dimension, keeping it. `x.mean(0, true)`
    #[rhai_fn(name = "mean", pure, return_raw)]
    pub fn mean_keep(t: &mut Tensor, dim: INT, keepdim: bool) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Mean, Some(dim), keepdim)
    }

    /// Largest element. `x.max()`
    #[rhai_fn(pure, return_raw)]
    pub fn max(t: &mut Tensor) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Max, None, false)
    }
    /// Largest values along a dimension (use `argmax` for where). `x.max(1)`
    #[rhai_fn(name = "max", pure, return_raw)]
    pub fn max_dim(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Max, Some(dim), false)
    }
    /// Largest values along a dimension, keeping it. `x.max(1, true)`
    #[rhai_fn(name = "max", pure, return_raw)]
    pub fn max_keep(t: &mut Tensor, dim: INT, keepdim: bool) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Max, Some(dim), keepdim)
    }

    /// Smallest element. `x.min()`
    #[rhai_fn(pure, return_raw)]
    pub fn min(t: &mut Tensor) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Min, None, false)
    }
    /// Smallest values along a dimension. `x.min(0)`
    #[rhai_fn(name = "min", pure, return_raw)]
    pub fn min_dim(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Min, Some(dim), false)
    }
    /// Smallest values along a dimension, keeping it. `x.min(0, true)`
    #[rhai_fn(name = "min", pure, return_raw)]
    pub fn min_keep(t: &mut Tensor, dim: INT, keepdim: bool) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Min, Some(dim), keepdim)
    }

    /// Flat index of the largest element. `x.argmax()`
    #[rhai_fn(pure, return_raw)]
    pub fn argmax(t: &mut Tensor) -> ScriptResult<Tensor> {
        reduce(t, Reduction::ArgMax, None, false)
    }
    /// Indices of the largest values along a dimension. `logits.argmax(-1)`
    #[rhai_fn(name = "argmax", pure, return_raw)]
    pub fn argmax_dim(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        reduce(t, Reduction::ArgMax, Some(dim), false)
    }
    /// Indices of the largest values along a dimension, keeping it.
    #[rhai_fn(name = "argmax", pure, return_raw)]
    pub fn argmax_keep(t: &mut Tensor, dim: INT, keepdim: bool) -> ScriptResult<Tensor> {
        reduce(t, Reduction::ArgMax, Some(dim), keepdim)
    }

    /// Flat index of the smallest element. `x.argmin()`
    #[rhai_fn(pure, return_raw)]
    pub fn argmin(t: &mut Tensor) -> ScriptResult<Tensor> {
        reduce(t, Reduction::ArgMin, None, false)
    }
    /// Indices of the smallest values along a dimension. `x.argmin(0)`
    #[rhai_fn(name = "argmin", pure, return_raw)]
    pub fn argmin_dim(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        reduce(t, Reduction::ArgMin, Some(dim), false)
    }
    /// Indices of the smallest values along a dimension, keeping it.
    #[rhai_fn(name = "argmin", pure, return_raw)]
    pub fn argmin_keep(t: &mut Tensor, dim: INT, keepdim: bool) -> ScriptResult<Tensor> {
        reduce(t, Reduction::ArgMin, Some(dim), keepdim)
    }

    /// L2 norm of all elements. `x.norm()`
    #[rhai_fn(pure, return_raw)]
    pub fn norm(t: &mut Tensor) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Norm, None, false)
    }
    /// L2 norm along a dimension (per row with 1). `w.norm(1)`
    #[rhai_fn(name = "norm", pure, return_raw)]
    pub fn norm_dim(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Norm, Some(dim), false)
    }
    /// L2 norm along a dimension, keeping it. `w.norm(1, true)`
    #[rhai_fn(name = "norm", pure, return_raw)]
    pub fn norm_keep(t: &mut Tensor, dim: INT, keepdim: bool) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Norm, Some(dim), keepdim)
    }

    /// Unbiased variance of all elements. `x.variance()` (`var` is a reserved word in Rhai)
    #[rhai_fn(pure, return_raw)]
    pub fn variance(t: &mut Tensor) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Var, None, false)
    }
    /// Unbiased variance along a dimension. `x.variance(0)`
    #[rhai_fn(name = "variance", pure, return_raw)]
    pub fn var_dim(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Var, Some(dim), false)
    }
    /// Unbiased variance along a dimension, keeping it. `x.variance(0, true)`
    #[rhai_fn(name = "variance", pure, return_raw)]
    pub fn var_keep(t: &mut Tensor, dim: INT, keepdim: bool) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Var, Some(dim), keepdim)
    }

    /// Unbiased standard deviation of all elements. `x.std()`
    #[rhai_fn(pure, return_raw)]
    pub fn std(t: &mut Tensor) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Std, None, false)
    }
    /// Unbiased standard deviation along a dimension. `x.std(0)`
    #[rhai_fn(name = "std", pure, return_raw)]
    pub fn std_dim(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Std, Some(dim), false)
    }
    /// Unbiased standard deviation along a dimension, keeping it.
    #[rhai_fn(name = "std", pure, return_raw)]
    pub fn std_keep(t: &mut Tensor, dim: INT, keepdim: bool) -> ScriptResult<Tensor> {
        reduce(t, Reduction::Std, Some(dim), keepdim)
    }

    /// The k largest values along the last dimension and where they are:
    /// `#{values, indices}`. `x.topk(5)`
    #[rhai_fn(pure, return_raw)]
    pub fn topk(t: &mut Tensor, k: INT) -> ScriptResult<Map> {
        let last = *t.shape().last().unwrap_or(&1);
        if k < 0 || k > last {
            return Err(runtime_error(format!(
                "topk: k = {k} must be between 0 and the last dimension's size {last}"
            )));
        }
        let (values, indices) = t
            .inner()
            .f_topk(k, -1, true, true)
            .map_err(crate::core::Error::from)?;
        let mut map = Map::new();
        map.insert("values".into(), Dynamic::from(Tensor::new(values)));
        map.insert("indices".into(), Dynamic::from(Tensor::new(indices)));
        Ok(map)
    }
}

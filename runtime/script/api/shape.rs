//! Reshaping, joining, slicing and indexing tensors.
use crate::core::scalar_op::scalar_op;
use crate::core::Tensor;
use crate::script::error::{runtime_error, OrScriptError, ScriptResult};
use rhai::plugin::*;
use rhai::{Array, INT};

fn tensors(list: &Array, what: &str) -> ScriptResult<Vec<tch::Tensor>> {
    if list.is_empty() {
        return Err(runtime_error(format!(
            "{what}: the list of tensors is empty"
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| match v.read_lock::<Tensor>() {
            Some(t) => Ok(t.inner().shallow_clone()),
            None => Err(runtime_error(format!(
                "{what}: item {i} is a {}, not a tensor",
                v.type_name()
            ))),
        })
        .collect()
}

fn resolve_index(index: INT, size: i64, what: &str) -> ScriptResult<i64> {
    let resolved = if index < 0 { index + size } else { index };
    if resolved < 0 || resolved >= size {
        return Err(runtime_error(format!(
            "{what}: index {index} is out of range for a dimension of size {size}"
        )));
    }
    Ok(resolved)
}

fn wrap(result: Result<tch::Tensor, tch::TchError>) -> ScriptResult<Tensor> {
    result.map(Tensor::new).or_script_error()
}

#[export_module]
pub mod shape_api {
    use super::{resolve_index, tensors, wrap};
    use crate::script::convert;
    use crate::script::error::{runtime_error, OrScriptError, ScriptResult};
    use rhai::{Array, FLOAT, INT};

    pub type Tensor = crate::core::Tensor;

    /// The same values in a new shape (-1 infers one size). `x.reshape([2, -1])`
    #[rhai_fn(pure, return_raw)]
    pub fn reshape(t: &mut Tensor, shape: Array) -> ScriptResult<Tensor> {
        wrap(
            t.inner()
                .f_reshape(convert::int_list(&shape, "reshape sizes")?),
        )
    }

    /// Swaps two dimensions. `x.transpose(0, 1)`
    #[rhai_fn(pure, return_raw)]
    pub fn transpose(t: &mut Tensor, dim0: INT, dim1: INT) -> ScriptResult<Tensor> {
        wrap(t.inner().f_transpose(dim0, dim1))
    }

    /// Transpose of a matrix (a 1-d tensor is returned as is). `w.t()`
    #[rhai_fn(pure, return_raw)]
    pub fn t(t: &mut Tensor) -> ScriptResult<Tensor> {
        if t.shape().len() > 2 {
            return Err(runtime_error(format!(
                "t() expects at most 2 dimensions, got shape {:?}; use transpose(d0, d1) or permute",
                t.shape()
            )));
        }
        if t.shape().len() < 2 {
            return Ok(t.clone());
        }
        wrap(t.inner().f_transpose(0, 1))
    }

    /// Reorders dimensions. `x.permute([2, 0, 1])`
    #[rhai_fn(pure, return_raw)]
    pub fn permute(t: &mut Tensor, dims: Array) -> ScriptResult<Tensor> {
        wrap(
            t.inner()
                .f_permute(convert::int_list(&dims, "permute dims")?),
        )
    }

    /// Inserts a dimension of size 1. `x.unsqueeze(0)`
    #[rhai_fn(pure, return_raw)]
    pub fn unsqueeze(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        wrap(t.inner().f_unsqueeze(dim))
    }

    /// Removes every dimension of size 1. `x.squeeze()`
    #[rhai_fn(pure, return_raw)]
    pub fn squeeze(t: &mut Tensor) -> ScriptResult<Tensor> {
        wrap(t.inner().f_squeeze())
    }

    /// Removes one dimension if its size is 1. `x.squeeze(0)`
    #[rhai_fn(name = "squeeze", pure, return_raw)]
    pub fn squeeze_dim(t: &mut Tensor, dim: INT) -> ScriptResult<Tensor> {
        wrap(t.inner().f_squeeze_dim(dim))
    }

    /// All elements in one dimension. `x.flatten()`
    #[rhai_fn(pure, return_raw)]
    pub fn flatten(t: &mut Tensor) -> ScriptResult<Tensor> {
        wrap(t.inner().f_reshape([-1]))
    }

    /// Joins tensors along an existing dimension. `cat([a, b], 0)`
    #[rhai_fn(return_raw)]
    pub fn cat(list: Array, dim: INT) -> ScriptResult<Tensor> {
        wrap(tch::Tensor::f_cat(&tensors(&list, "cat")?, dim))
    }

    /// Joins same-shaped tensors along a new dimension. `stack([a, b], 0)`
    #[rhai_fn(return_raw)]
    pub fn stack(list: Array, dim: INT) -> ScriptResult<Tensor> {
        wrap(tch::Tensor::f_stack(&tensors(&list, "stack")?, dim))
    }

    /// Elements start..end (end excluded) along a dimension. `x.slice(0, 10, 20)`
    #[rhai_fn(pure, return_raw)]
    pub fn slice(t: &mut Tensor, dim: INT, start: INT, end: INT) -> ScriptResult<Tensor> {
        let ndim = t.shape().len() as i64;
        if dim < -ndim || dim >= ndim.max(1) {
            return Err(runtime_error(format!(
                "slice: dim {dim} is out of range for a tensor with {ndim} dimension(s)"
            )));
        }
        wrap(t.inner().f_slice(dim, start, end, 1))
    }

    /// Rows (or other slices) picked by index. `x.index_select(0, [3, 1])`
    #[rhai_fn(pure, return_raw)]
    pub fn index_select(t: &mut Tensor, dim: INT, indices: Array) -> ScriptResult<Tensor> {
        let ids = convert::int_list(&indices, "index_select indices")?;
        let index = tch::Tensor::f_from_slice(&ids).or_script_error()?;
        index_select_tensor(t, dim, Tensor::new(index))
    }

    /// Slices picked by an i64 index tensor. `x.index_select(0, idx)`
    #[rhai_fn(name = "index_select", pure, return_raw)]
    pub fn index_select_tensor(t: &mut Tensor, dim: INT, indices: Tensor) -> ScriptResult<Tensor> {
        let index = indices.inner().f_to(t.device()).or_script_error()?;
        wrap(t.inner().f_index_select(dim, &index))
    }

    /// `x[i]`: the i-th slice along the first dimension (negative counts from the end).
    #[rhai_fn(index_get, pure, return_raw)]
    pub fn index(t: &mut Tensor, i: INT) -> ScriptResult<Tensor> {
        let size = *t
            .shape()
            .first()
            .ok_or_else(|| runtime_error("cannot index a 0-dim tensor"))?;
        wrap(t.inner().f_select(0, resolve_index(i, size, "x[i]")?))
    }

    /// `x[mask]`, as in PyTorch: a mask of x's shape gives the elements where it is true (1-d);
    /// a mask over the leading dims gives those rows, e.g. `x[x.norm(1, false) < 10.0]`.
    #[rhai_fn(index_get, pure, return_raw)]
    pub fn index_mask(t: &mut Tensor, mask: Tensor) -> ScriptResult<Tensor> {
        if mask.kind()? != tch::Kind::Bool {
            return Err(runtime_error(
                "x[mask]: the mask must be a bool tensor (e.g. x > 0)",
            ));
        }
        wrap(t.inner().f_index(&[Some(mask.inner())]))
    }

    /// `x[i] = value`: fills the i-th slice with a number.
    #[rhai_fn(index_set, return_raw)]
    pub fn set_index_float(t: &mut Tensor, i: INT, value: FLOAT) -> ScriptResult<()> {
        let mut slot = index(t, i)?.inner().shallow_clone();
        let _ = scalar_op(|| slot.f_fill_(value)).or_script_error()?;
        Ok(())
    }

    /// `x[i] = value`: fills the i-th slice with an integer.
    #[rhai_fn(index_set, return_raw)]
    pub fn set_index_int(t: &mut Tensor, i: INT, value: INT) -> ScriptResult<()> {
        set_index_float(t, i, value as FLOAT)
    }

    /// `x[i] = row`: copies a tensor (broadcast) into the i-th slice.
    #[rhai_fn(index_set, return_raw)]
    pub fn set_index_tensor(t: &mut Tensor, i: INT, value: Tensor) -> ScriptResult<()> {
        let mut slot = index(t, i)?.inner().shallow_clone();
        slot.f_copy_(value.inner()).or_script_error()?;
        Ok(())
    }

    /// The size of the first dimension. `x.len()`
    #[rhai_fn(name = "len", pure)]
    pub fn len(t: &mut Tensor) -> INT {
        t.shape().first().copied().unwrap_or(0)
    }
}

//! Conversions between Rhai values (arrays, maps, numbers) and core types:
//! shapes, flat f64 data, nested arrays and option maps.
use crate::core::memory;
use crate::core::options::OptionMap;
use crate::core::sweep::{Cell, Scalar};
use crate::core::Tensor;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::{Array, Dynamic, Map, FLOAT, INT};
use tch::Kind;

/// The shape of a new tensor, given as one integer or an array of
/// integers; a shape whose f32 tensor could not fit in the memory available
/// is refused before libtorch tries (see `core::memory`).
pub fn shape(value: &Dynamic) -> ScriptResult<Vec<i64>> {
    let dims = dims_of(value)?;
    memory::ensure_fits(memory::bytes_of(&dims, 4), || {
        format!("a tensor of shape {dims:?}")
    })?;
    Ok(dims)
}

fn dims_of(value: &Dynamic) -> ScriptResult<Vec<i64>> {
    if let Some(n) = value.clone().try_cast::<INT>() {
        return non_negative_dims(vec![n]);
    }
    let Some(array) = value.clone().try_cast::<Array>() else {
        return Err(runtime_error(format!(
            "a shape must be an integer or an array of integers, got {}",
            value.type_name()
        )));
    };
    let dims = array
        .iter()
        .map(|d| {
            d.as_int()
                .map_err(|t| runtime_error(format!("shape entries must be integers, got {t}")))
        })
        .collect::<ScriptResult<Vec<i64>>>()?;
    non_negative_dims(dims)
}

fn non_negative_dims(dims: Vec<i64>) -> ScriptResult<Vec<i64>> {
    match dims.iter().find(|d| **d < 0) {
        Some(d) => Err(runtime_error(format!(
            "shape dimensions must be >= 0, got {d}"
        ))),
        None => Ok(dims),
    }
}

/// A list of integers (dims for permute, indices for index_select).
pub fn int_list(array: &Array, what: &str) -> ScriptResult<Vec<i64>> {
    array
        .iter()
        .map(|d| {
            d.as_int()
                .map_err(|t| runtime_error(format!("{what} must be integers, got {t}")))
        })
        .collect()
}

/// An array of strings (texts to search, a concept's names); `what` names
/// the argument in the error.
pub fn string_list(value: &Dynamic, what: &str) -> ScriptResult<Vec<String>> {
    let array = value.read_lock::<Array>().ok_or_else(|| {
        runtime_error(format!(
            "{what} must be an array of strings, got {}",
            value.type_name()
        ))
    })?;
    array
        .iter()
        .map(|v| {
            v.clone()
                .into_string()
                .map_err(|t| runtime_error(format!("{what} must be strings, got {t}")))
        })
        .collect()
}

/// The element type a nested array implies, as torch.tensor infers it.
#[derive(PartialEq, Clone, Copy)]
enum Leaf {
    Bool,
    Int,
    Float,
}

/// `tensor([[1, 2], [3, 4]])`: a rectangular nested array to a tensor
/// (integers give i64, any float gives f32, booleans give bool).
pub fn nested_to_tensor(value: &Dynamic) -> ScriptResult<Tensor> {
    let mut shape = Vec::new();
    probe_shape(value, &mut shape);
    let mut values = Vec::new();
    let mut leaf = None;
    flatten(value, &shape, 0, &mut values, &mut leaf)?;
    let kind = match leaf {
        Some(Leaf::Bool) => Kind::Bool,
        Some(Leaf::Int) => Kind::Int64,
        Some(Leaf::Float) | None => Kind::Float,
    };
    Ok(Tensor::from_f64(&values, &shape, kind)?)
}

fn probe_shape(value: &Dynamic, shape: &mut Vec<i64>) {
    if let Some(array) = value.read_lock::<Array>() {
        shape.push(array.len() as i64);
        if let Some(first) = array.first() {
            probe_shape(first, shape);
        }
    }
}

fn flatten(
    value: &Dynamic,
    shape: &[i64],
    depth: usize,
    out: &mut Vec<f64>,
    leaf: &mut Option<Leaf>,
) -> ScriptResult<()> {
    if let Some(array) = value.read_lock::<Array>() {
        if depth >= shape.len() || array.len() as i64 != shape[depth] {
            return Err(runtime_error(format!(
                "tensor(): nested arrays must be rectangular (shape {shape:?} expected at depth {depth})"
            )));
        }
        for item in array.iter() {
            flatten(item, shape, depth + 1, out, leaf)?;
        }
        return Ok(());
    }
    if depth != shape.len() {
        return Err(runtime_error("tensor(): nested arrays must be rectangular"));
    }
    let (number, kind) = scalar(value)?;
    *leaf = Some(match (*leaf, kind) {
        (Some(Leaf::Float), _) | (_, Leaf::Float) => Leaf::Float,
        (Some(Leaf::Int), _) | (_, Leaf::Int) => Leaf::Int,
        _ => Leaf::Bool,
    });
    out.push(number);
    Ok(())
}

fn scalar(value: &Dynamic) -> ScriptResult<(f64, Leaf)> {
    if let Ok(i) = value.as_int() {
        Ok((i as f64, Leaf::Int))
    } else if let Ok(f) = value.as_float() {
        Ok((f, Leaf::Float))
    } else if let Ok(b) = value.as_bool() {
        Ok((if b { 1.0 } else { 0.0 }, Leaf::Bool))
    } else {
        Err(runtime_error(format!(
            "tensor(): expected numbers, got {}",
            value.type_name()
        )))
    }
}

/// A tensor as nested Rhai arrays (a plain number for 0-dim tensors).
pub fn tensor_to_nested(t: &Tensor) -> ScriptResult<Dynamic> {
    let kind = t.kind()?;
    let values = t.to_f64_vec()?;
    let leaf = |v: f64| -> Dynamic {
        match kind {
            Kind::Bool => Dynamic::from(v != 0.0),
            Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 => Dynamic::from(v as FLOAT),
            _ => Dynamic::from(v as INT),
        }
    };
    let shape = t.shape();
    if shape.is_empty() {
        return Ok(leaf(values[0]));
    }
    Ok(build_nested(&values, &shape, &leaf))
}

fn build_nested(values: &[f64], shape: &[i64], leaf: &dyn Fn(f64) -> Dynamic) -> Dynamic {
    if shape.len() == 1 {
        return Dynamic::from_array(values.iter().map(|v| leaf(*v)).collect());
    }
    let count = shape[0].max(0) as usize;
    let stride = values.len().checked_div(count).unwrap_or(0);
    let rows = (0..count)
        .map(|i| build_nested(&values[i * stride..(i + 1) * stride], &shape[1..], leaf))
        .collect();
    Dynamic::from_array(rows)
}

/// A number, an array of numbers or a tensor, flattened to f64 (for plots and fits).
pub fn floats(value: &Dynamic, what: &str) -> ScriptResult<Vec<f64>> {
    if let Some(t) = value.read_lock::<Tensor>() {
        return Ok(t.to_f64_vec()?);
    }
    if let Some(array) = value.read_lock::<Array>() {
        return array
            .iter()
            .map(|v| {
                number(v).ok_or_else(|| {
                    runtime_error(format!("{what} must hold numbers, found {}", v.type_name()))
                })
            })
            .collect();
    }
    number(value).map(|v| vec![v]).ok_or_else(|| {
        runtime_error(format!(
            "{what} must be an array or a tensor, got {}",
            value.type_name()
        ))
    })
}

/// An INT or FLOAT as f64.
pub fn number(value: &Dynamic) -> Option<f64> {
    value
        .as_float()
        .ok()
        .or_else(|| value.as_int().ok().map(|i| i as f64))
}

/// A Rhai option map as core reads options: JSON values by key, which
/// core's configs deserialise with serde (an integer fills a float there, a
/// float where an integer belongs is refused), naming the key of any bad
/// option. A float JSON cannot hold (NaN, ±inf) is refused here, where the
/// key is still known, rather than read as "absent".
pub fn option_map(map: &Map, context: &str) -> ScriptResult<OptionMap> {
    map.iter()
        .map(|(key, value)| {
            if let Some(bad) = non_finite(value) {
                return Err(runtime_error(format!(
                    "{context}: option '{key}' must be a finite number, got {bad}"
                )));
            }
            let json = rhai::serde::from_dynamic::<serde_json::Value>(value).map_err(|_| {
                runtime_error(format!(
                    "{context}: option '{key}' cannot be a {}",
                    value.type_name()
                ))
            })?;
            Ok((key.to_string(), json))
        })
        .collect()
}

/// The first NaN or infinity in a value or the arrays and maps inside it.
fn non_finite(value: &Dynamic) -> Option<FLOAT> {
    if let Ok(f) = value.as_float() {
        return (!f.is_finite()).then_some(f);
    }
    if let Some(array) = value.read_lock::<Array>() {
        return array.iter().find_map(non_finite);
    }
    if let Some(map) = value.read_lock::<Map>() {
        return map.values().find_map(non_finite);
    }
    None
}

/// Typed access to an options map (`#{lr: 1e-3, steps: 100}`), rejecting
/// unknown keys so a typo is an error rather than a silently ignored setting.
pub struct Options<'a> {
    map: &'a Map,
    context: &'a str,
}

impl<'a> Options<'a> {
    pub fn new(map: &'a Map, context: &'a str, known: &[&str]) -> ScriptResult<Self> {
        if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(runtime_error(format!(
                "{context}: unknown option '{key}' (known: {})",
                known.join(", ")
            )));
        }
        Ok(Options { map, context })
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn f64(&self, key: &str, default: f64) -> ScriptResult<f64> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => number(v).ok_or_else(|| self.wrong(key, "a number", v)),
        }
    }

    pub fn int(&self, key: &str, default: i64) -> ScriptResult<i64> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v.as_int().map_err(|_| self.wrong(key, "an integer", v)),
        }
    }

    /// An integer of at least 1 (a count or a size).
    pub fn positive(&self, key: &str, default: i64) -> ScriptResult<usize> {
        let value = self.int(key, default)?;
        usize::try_from(value)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| {
                runtime_error(format!(
                    "{}: option '{key}' must be a positive integer, got {value}",
                    self.context
                ))
            })
    }

    /// An integer of at least 0 (a count that may be zero, a seed).
    pub fn non_negative(&self, key: &str, default: u64) -> ScriptResult<u64> {
        let value = self.int(key, default as i64)?;
        u64::try_from(value).map_err(|_| {
            runtime_error(format!(
                "{}: option '{key}' must be >= 0, got {value}",
                self.context
            ))
        })
    }

    pub fn bool(&self, key: &str, default: bool) -> ScriptResult<bool> {
        match self.map.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().map_err(|_| self.wrong(key, "true or false", v)),
        }
    }

    pub fn string(&self, key: &str) -> ScriptResult<Option<String>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) if v.is_unit() => Ok(None),
            Some(v) => v
                .clone()
                .into_string()
                .map(Some)
                .map_err(|_| self.wrong(key, "a string", v)),
        }
    }

    pub fn floats(&self, key: &str) -> ScriptResult<Option<Vec<f64>>> {
        self.map
            .get(key)
            .map(|v| floats(v, &format!("{}: option '{key}'", self.context)))
            .transpose()
    }

    fn wrong(&self, key: &str, expected: &str, got: &Dynamic) -> Box<rhai::EvalAltResult> {
        runtime_error(format!(
            "{}: option '{key}' must be {expected}, got {}",
            self.context,
            got.type_name()
        ))
    }
}

/// An array of maps (rows of a table or CSV), or an error naming the bad row.
pub fn rows_of_maps(rows: &Array, what: &str) -> ScriptResult<Vec<Map>> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            r.read_lock::<Map>().map(|m| m.clone()).ok_or_else(|| {
                runtime_error(format!("{what}: row {i} is a {}, not a map", r.type_name()))
            })
        })
        .collect()
}

/// Text from outside (a CSV cell, `--set name=value`) as the value it spells:
/// an integer, a float, a boolean, or else the text itself (core's rule).
pub fn parse_scalar(text: &str) -> Dynamic {
    scalar_value(Scalar::parse(text))
}

/// A core scalar (a sweep's setting or result) as a script value.
pub fn scalar_value(value: Scalar) -> Dynamic {
    match value {
        Scalar::Int(i) => Dynamic::from(i),
        Scalar::Float(f) => Dynamic::from(f),
        Scalar::Bool(b) => Dynamic::from(b),
        Scalar::Text(t) => Dynamic::from(t),
    }
}

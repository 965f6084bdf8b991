//! Creating tensors, reading their properties, moving them between devices
//! and dtypes, and printing them.
use crate::core::scalar_op::scalar_op;
use crate::core::tensor::{parse_device, parse_kind};
use crate::core::Tensor;
use crate::script::convert::Options;
use crate::script::error::{OrScriptError, ScriptResult};
use rhai::plugin::*;
use rhai::Map;
use tch::{Device, Kind};

fn options(opts: &Map, what: &str) -> ScriptResult<(Kind, Device)> {
    let opts = Options::new(opts, what, &["dtype", "device"])?;
    let kind = match opts.string("dtype")? {
        Some(name) => parse_kind(&name)?,
        None => Kind::Float,
    };
    let device = match opts.string("device")? {
        Some(name) => parse_device(&name)?,
        None => Device::Cpu,
    };
    Ok((kind, device))
}

fn wrap(result: Result<tch::Tensor, tch::TchError>) -> ScriptResult<Tensor> {
    result.map(Tensor::new).or_script_error()
}

#[export_module]
pub mod tensor_api {
    use super::{options, wrap};
    use crate::core::tensor::{best_device, device_name, kind_name, parse_device, parse_kind};
    use crate::script::convert;
    use crate::script::error::{runtime_error, OrScriptError, ScriptResult};
    use rhai::{Array, Dynamic, Map, FLOAT, INT};
    use tch::{Device, Kind};

    pub type Tensor = crate::core::Tensor;

    const CPU_F32: (Kind, Device) = (Kind::Float, Device::Cpu);

    /// A tensor from nested arrays: integers give i64, floats f32, booleans bool.
    /// `tensor([[1.0, 2.0], [3.0, 4.0]])`
    #[rhai_fn(return_raw)]
    pub fn tensor(values: Dynamic) -> ScriptResult<Tensor> {
        convert::nested_to_tensor(&values)
    }

    /// Zeros of the given shape (f32 on the CPU). `zeros([2, 3])`
    #[rhai_fn(return_raw)]
    pub fn zeros(shape: Dynamic) -> ScriptResult<Tensor> {
        wrap(tch::Tensor::f_zeros(convert::shape(&shape)?, CPU_F32))
    }

    /// Zeros with a dtype and device. `zeros([2, 3], #{dtype: "f64", device: "cpu"})`
    #[rhai_fn(name = "zeros", return_raw)]
    pub fn zeros_with(shape: Dynamic, opts: Map) -> ScriptResult<Tensor> {
        wrap(tch::Tensor::f_zeros(
            convert::shape(&shape)?,
            options(&opts, "zeros")?,
        ))
    }

    /// Ones of the given shape. `ones([4])`
    #[rhai_fn(return_raw)]
    pub fn ones(shape: Dynamic) -> ScriptResult<Tensor> {
        wrap(tch::Tensor::f_ones(convert::shape(&shape)?, CPU_F32))
    }

    /// Ones with a dtype and device. `ones([4], #{dtype: "i64"})`
    #[rhai_fn(name = "ones", return_raw)]
    pub fn ones_with(shape: Dynamic, opts: Map) -> ScriptResult<Tensor> {
        wrap(tch::Tensor::f_ones(
            convert::shape(&shape)?,
            options(&opts, "ones")?,
        ))
    }

    /// A tensor filled with one value. `full([2, 2], 0.5)`
    #[rhai_fn(return_raw)]
    pub fn full(shape: Dynamic, value: FLOAT) -> ScriptResult<Tensor> {
        let shape = convert::shape(&shape)?;
        wrap(scalar_op(|| tch::Tensor::f_full(&shape, value, CPU_F32)))
    }

    /// A tensor filled with one integer value (f32). `full([2, 2], 7)`
    #[rhai_fn(name = "full", return_raw)]
    pub fn full_int(shape: Dynamic, value: INT) -> ScriptResult<Tensor> {
        full(shape, value as FLOAT)
    }

    /// Standard-normal samples (repeatable after `seed(n)`). `randn([128, 64])`
    #[rhai_fn(return_raw)]
    pub fn randn(shape: Dynamic) -> ScriptResult<Tensor> {
        wrap(tch::Tensor::f_randn(convert::shape(&shape)?, CPU_F32))
    }

    /// Standard-normal samples with a dtype and device. `randn([8, 8], #{device: device()})`
    #[rhai_fn(name = "randn", return_raw)]
    pub fn randn_with(shape: Dynamic, opts: Map) -> ScriptResult<Tensor> {
        wrap(tch::Tensor::f_randn(
            convert::shape(&shape)?,
            options(&opts, "randn")?,
        ))
    }

    /// Uniform samples in [0, 1). `rand([3])`
    #[rhai_fn(return_raw)]
    pub fn rand(shape: Dynamic) -> ScriptResult<Tensor> {
        wrap(tch::Tensor::f_rand(convert::shape(&shape)?, CPU_F32))
    }

    /// Uniform samples with a dtype and device. `rand([3], #{dtype: "f64"})`
    #[rhai_fn(name = "rand", return_raw)]
    pub fn rand_with(shape: Dynamic, opts: Map) -> ScriptResult<Tensor> {
        wrap(tch::Tensor::f_rand(
            convert::shape(&shape)?,
            options(&opts, "rand")?,
        ))
    }

    /// The integers 0..n as an i64 tensor. `arange(5)`
    #[rhai_fn(return_raw)]
    pub fn arange(n: INT) -> ScriptResult<Tensor> {
        wrap(scalar_op(|| {
            tch::Tensor::f_arange(n, (Kind::Int64, Device::Cpu))
        }))
    }

    /// The integers a..b as an i64 tensor. `arange(2, 6)`
    #[rhai_fn(name = "arange", return_raw)]
    pub fn arange_range(start: INT, end: INT) -> ScriptResult<Tensor> {
        wrap(scalar_op(|| {
            tch::Tensor::f_arange_start(start, end, (Kind::Int64, Device::Cpu))
        }))
    }

    /// `n` evenly spaced values from `a` to `b` inclusive. `linspace(0.0, 1.0, 5)`
    #[rhai_fn(return_raw)]
    pub fn linspace(start: FLOAT, end: FLOAT, steps: INT) -> ScriptResult<Tensor> {
        if steps < 0 {
            return Err(runtime_error(format!(
                "linspace: steps must be >= 0, got {steps}"
            )));
        }
        wrap(scalar_op(|| {
            tch::Tensor::f_linspace(start, end, steps, CPU_F32)
        }))
    }

    /// `linspace` with integer end points. `linspace(0, 10, 11)`
    #[rhai_fn(name = "linspace", return_raw)]
    pub fn linspace_int(start: INT, end: INT, steps: INT) -> ScriptResult<Tensor> {
        linspace(start as FLOAT, end as FLOAT, steps)
    }

    /// The n×n identity matrix. `eye(3)`
    #[rhai_fn(return_raw)]
    pub fn eye(n: INT) -> ScriptResult<Tensor> {
        if n < 0 {
            return Err(runtime_error(format!("eye: n must be >= 0, got {n}")));
        }
        wrap(tch::Tensor::f_eye(n, CPU_F32))
    }

    /// The shape as an array of integers. `x.shape`
    #[rhai_fn(get = "shape", pure)]
    pub fn shape(t: &mut Tensor) -> Array {
        t.shape().into_iter().map(Dynamic::from).collect()
    }

    /// The element type: "f32", "f64", "f16", "bf16", "i64", "bool", ...
    #[rhai_fn(get = "dtype", pure, return_raw)]
    pub fn dtype(t: &mut Tensor) -> ScriptResult<String> {
        Ok(kind_name(t.kind()?).to_string())
    }

    /// Where the tensor lives: "cpu" or "cuda".
    #[rhai_fn(get = "device", pure)]
    pub fn device_of(t: &mut Tensor) -> String {
        device_name(t.device())
    }

    /// The number of elements.
    #[rhai_fn(get = "numel", pure)]
    pub fn numel(t: &mut Tensor) -> INT {
        t.numel()
    }

    /// The number of dimensions.
    #[rhai_fn(get = "ndim", pure)]
    pub fn ndim(t: &mut Tensor) -> INT {
        t.shape().len() as INT
    }

    /// The best available device: "cuda" when a GPU is usable, else "cpu".
    pub fn device() -> String {
        device_name(best_device())
    }

    /// Whether a CUDA GPU is usable from this build.
    pub fn cuda_available() -> bool {
        tch::Cuda::is_available()
    }

    /// Whether a device ("cpu", "cuda") multiplies bf16 in hardware, so that
    /// `precision: "bf16"` is faster there: CPUs with AVX512-BF16 (or Arm's
    /// BF16), and GPUs. `if bf16_is_native("cpu") { ... }`
    #[rhai_fn(return_raw)]
    pub fn bf16_is_native(device: &str) -> ScriptResult<bool> {
        let device = crate::core::tensor::parse_device(device)?;
        Ok(crate::core::precision::bf16_is_native(device))
    }

    /// CUDA as this process sees it: `runtime_loaded` (libtorch's CUDA
    /// backend is loaded), `libtorch_cuda` (its path, or ()), `devices`, and
    /// `reason` (why no device is usable, or ()). `cuda_info().devices`
    pub fn cuda_info() -> Map {
        let status = crate::core::cuda::status();
        let mut info = Map::new();
        info.insert("runtime_loaded".into(), status.runtime_loaded().into());
        info.insert(
            "libtorch_cuda".into(),
            status
                .libtorch_cuda
                .map_or(Dynamic::UNIT, |p| p.display().to_string().into()),
        );
        info.insert("devices".into(), (status.device_count as INT).into());
        info.insert(
            "reason".into(),
            status
                .unavailable_reason
                .map_or(Dynamic::UNIT, Dynamic::from),
        );
        info
    }

    /// The value of a one-element tensor as a number. `x.sum().item()`
    #[rhai_fn(pure, return_raw)]
    pub fn item(t: &mut Tensor) -> ScriptResult<FLOAT> {
        Ok(t.item()?)
    }

    /// The values as nested arrays. `x.to_array()`
    #[rhai_fn(pure, return_raw)]
    pub fn to_array(t: &mut Tensor) -> ScriptResult<Dynamic> {
        convert::tensor_to_nested(t)
    }

    /// A copy on another device. `x.to("cuda")`
    #[rhai_fn(name = "to", pure, return_raw)]
    pub fn to_device(t: &mut Tensor, device: &str) -> ScriptResult<Tensor> {
        wrap(t.inner().f_to(parse_device(device)?))
    }

    /// A copy with another element type. `x.to_dtype("f16")`
    #[rhai_fn(pure, return_raw)]
    pub fn to_dtype(t: &mut Tensor, dtype: &str) -> ScriptResult<Tensor> {
        wrap(t.inner().f_totype(parse_kind(dtype)?))
    }

    /// A deep copy (new storage). `let y = x.clone();`
    #[rhai_fn(name = "clone", pure, return_raw)]
    pub fn deep_clone(t: &mut Tensor) -> ScriptResult<Tensor> {
        let mut copy = t.inner().f_zeros_like().or_script_error()?;
        copy.f_copy_(t.inner()).or_script_error()?;
        Ok(Tensor::new(copy))
    }

    /// Torch-like text: values, shape, dtype, device.
    #[rhai_fn(name = "to_string", pure)]
    pub fn to_string(t: &mut Tensor) -> String {
        t.to_string()
    }

    /// Same as `to_string`; used by `debug` and the REPL.
    #[rhai_fn(name = "to_debug", pure)]
    pub fn to_debug(t: &mut Tensor) -> String {
        t.to_string()
    }
}

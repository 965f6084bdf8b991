//! Gradients, gradient-free evaluation, optimisers and seeds.
use crate::core::Tensor;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::plugin::*;
use rhai::Array;

/// A script-visible optimiser: shared so `opt.step()` works on copies of the handle.
pub type Optimizer = std::rc::Rc<std::cell::RefCell<crate::core::optim::Optimizer>>;

fn params(list: &Array, what: &str) -> ScriptResult<Vec<Tensor>> {
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            v.read_lock::<Tensor>().map(|t| t.clone()).ok_or_else(|| {
                runtime_error(format!(
                    "{what}: parameter {i} is a {}, not a tensor",
                    v.type_name()
                ))
            })
        })
        .collect()
}

#[export_module]
pub mod autograd_api {
    use super::params;
    use crate::core::optim::{self, AdamConfig};
    use crate::script::convert::Options;
    use crate::script::error::{runtime_error, OrScriptError, ScriptResult};
    use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext, FLOAT, INT};
    use std::cell::RefCell;
    use std::rc::Rc;

    pub type Tensor = crate::core::Tensor;
    pub type Optimizer = super::Optimizer;

    /// Marks a tensor as a parameter whose gradient `backward()` computes; returns it.
    /// `let w = randn([4, 4]).requires_grad();`
    #[rhai_fn(pure, return_raw)]
    pub fn requires_grad(t: &mut Tensor) -> ScriptResult<Tensor> {
        let marked = t.inner().f_set_requires_grad(true).or_script_error()?;
        Ok(Tensor::new(marked))
    }

    /// Back-propagates from a scalar, filling `.grad` of the parameters. `loss.backward()`
    #[rhai_fn(pure, return_raw)]
    pub fn backward(t: &mut Tensor) -> ScriptResult<()> {
        if t.numel() != 1 {
            return Err(runtime_error(format!(
                "backward() needs a scalar (one element), got shape {:?}; reduce it with sum() or mean() first",
                t.shape()
            )));
        }
        if !t.inner().requires_grad() {
            return Err(runtime_error(
                "backward(): this value does not depend on any tensor marked requires_grad()",
            ));
        }
        t.inner().f_backward().or_script_error()
    }

    /// The gradient from the last `backward()`, or `()` if there is none. `w.grad`
    #[rhai_fn(get = "grad", pure, return_raw)]
    pub fn grad(t: &mut Tensor) -> ScriptResult<Dynamic> {
        let g = t.inner().f_grad().or_script_error()?;
        Ok(if g.defined() {
            Dynamic::from(Tensor::new(g))
        } else {
            Dynamic::UNIT
        })
    }

    /// A copy that is cut from the autograd graph. `x.detach()`
    #[rhai_fn(pure, return_raw)]
    pub fn detach(t: &mut Tensor) -> ScriptResult<Tensor> {
        Ok(Tensor::new(t.inner().f_detach().or_script_error()?))
    }

    /// Runs a closure without recording gradients; returns its value.
    /// `let y = no_grad(|| model_output(x));`
    #[rhai_fn(return_raw)]
    pub fn no_grad(ctx: NativeCallContext, f: FnPtr) -> ScriptResult<Dynamic> {
        let _guard = tch::no_grad_guard();
        f.call_within_context(&ctx, ())
    }

    /// Adam over a list of parameters with PyTorch's defaults (lr 1e-3, betas [0.9, 0.999]).
    #[rhai_fn(return_raw)]
    pub fn adam(list: Array) -> ScriptResult<Optimizer> {
        adam_with(list, Map::new())
    }

    /// Adam with options `#{lr, betas: [b1, b2], eps, weight_decay}`.
    /// `let opt = adam([w, b], #{lr: 1e-3, betas: [0.9, 0.999]});`
    #[rhai_fn(name = "adam", return_raw)]
    pub fn adam_with(list: Array, opts: Map) -> ScriptResult<Optimizer> {
        let o = Options::new(&opts, "adam", &["lr", "betas", "eps", "weight_decay"])?;
        let defaults = AdamConfig::default();
        let betas = match o.floats("betas")? {
            None => defaults.betas,
            Some(b) if b.len() == 2 => (b[0], b[1]),
            Some(b) => {
                return Err(runtime_error(format!(
                    "adam: betas must have two values, got {}",
                    b.len()
                )))
            }
        };
        let cfg = AdamConfig {
            lr: o.f64("lr", defaults.lr)?,
            betas,
            eps: o.f64("eps", defaults.eps)?,
            weight_decay: o.f64("weight_decay", defaults.weight_decay)?,
        };
        let opt = optim::Optimizer::adam(params(&list, "adam")?, cfg)?;
        Ok(Rc::new(RefCell::new(opt)))
    }

    /// Stochastic gradient descent `#{lr, momentum}`. `let opt = sgd([w], #{lr: 0.1});`
    #[rhai_fn(return_raw)]
    pub fn sgd(list: Array, opts: Map) -> ScriptResult<Optimizer> {
        let o = Options::new(&opts, "sgd", &["lr", "momentum"])?;
        let opt = optim::Optimizer::sgd(
            params(&list, "sgd")?,
            o.f64("lr", 1e-2)?,
            o.f64("momentum", 0.0)?,
        )?;
        Ok(Rc::new(RefCell::new(opt)))
    }

    /// Clears the gradients of the optimiser's parameters. `opt.zero_grad()`
    #[rhai_fn(pure, return_raw)]
    pub fn zero_grad(opt: &mut Optimizer) -> ScriptResult<()> {
        Ok(opt.borrow().zero_grad()?)
    }

    /// Updates the parameters from their gradients. `opt.step()`
    #[rhai_fn(pure, return_raw)]
    pub fn step(opt: &mut Optimizer) -> ScriptResult<()> {
        Ok(opt.borrow().step()?)
    }

    /// The learning rate. `opt.lr`
    #[rhai_fn(get = "lr", pure)]
    pub fn get_lr(opt: &mut Optimizer) -> FLOAT {
        opt.borrow().lr()
    }

    /// Changes the learning rate (for schedules). `opt.lr = 1e-4;`
    #[rhai_fn(set = "lr", return_raw)]
    pub fn set_lr(opt: &mut Optimizer, lr: FLOAT) -> ScriptResult<()> {
        Ok(opt.borrow_mut().set_lr(lr)?)
    }

    /// Scales gradients so their joint L2 norm is at most `max`; returns the norm before.
    /// `clip_grad_norm([w, b], 1.0)`
    #[rhai_fn(return_raw)]
    pub fn clip_grad_norm(list: Array, max: FLOAT) -> ScriptResult<FLOAT> {
        if max.is_nan() || max <= 0.0 {
            return Err(runtime_error(format!(
                "clip_grad_norm: max must be > 0, got {max}"
            )));
        }
        Ok(optim::clip_grad_norm(
            &params(&list, "clip_grad_norm")?,
            max,
        )?)
    }

    /// Seeds every random generator so CPU runs repeat exactly. `seed(42)`
    pub fn seed(n: INT) {
        crate::core::rng::seed(n as u64);
    }

    /// Printable form of an optimiser.
    #[rhai_fn(name = "to_string", pure)]
    pub fn optimizer_to_string(opt: &mut Optimizer) -> String {
        let o = opt.borrow();
        format!("optimizer(lr={}, params={})", o.lr(), o.params().len())
    }
}

//! Hooks as script values: a list of maps `#{layer, hook, positions, and
//! one of add / replace / ablate / map}` turned into core `Hooks` for one
//! call, with `steer` (see `api::analysis`) added. A `map` closure runs
//! inside the model's forward pass through the calling context, which is
//! why the hooks borrow it and live only as long as the call.
use crate::core::model::{Edit, HookPoint, Hooks, Model, Site};
use crate::core::Tensor;
use crate::script::api::analysis::steering_hooks;
use crate::script::convert::Options;
use crate::script::error::{runtime_error, ScriptResult};
use rhai::{Array, Dynamic, Map, NativeCallContext};

/// One hook of a script's list: where, and what to do there.
fn parse_hook<'a>(
    ctx: &'a NativeCallContext<'a>,
    model: &Model,
    hook: &Dynamic,
    generating: bool,
) -> ScriptResult<(Site, Edit<'a>)> {
    let map = hook
        .read_lock::<Map>()
        .ok_or_else(|| {
            runtime_error(format!(
                "a hook must be a map such as #{{layer: 12, add: v}}, got {}",
                hook.type_name()
            ))
        })?
        .clone();
    let o = Options::new(
        &map,
        "hook",
        &[
            "layer",
            "hook",
            "positions",
            "add",
            "scale",
            "replace",
            "ablate",
            "map",
        ],
    )?;
    let layer = o.int("layer", -1)?;
    let layer = usize::try_from(layer)
        .map_err(|_| runtime_error("hook: option 'layer' (>= 0) is required"))?;
    let point = match o.string("hook")? {
        Some(name) => name.parse::<HookPoint>()?,
        None => HookPoint::ResidPre,
    };
    let site = Site { layer, point };
    site.check(model.n_layers())?;
    let positions = match map.get("positions") {
        None => None,
        Some(p) => Some(crate::script::convert::int_list(
            &p.read_lock::<Array>()
                .ok_or_else(|| runtime_error("hook: positions must be an array of integers"))?
                .to_vec(),
            "positions",
        )?),
    };
    if generating
        && positions
            .as_ref()
            .is_some_and(|p| p.iter().any(|&i| i >= 0))
    {
        return Err(runtime_error(
            "hook: in generate, positions count back from the newest token (-1 edits each new token); a position from the start is ambiguous once the cache is on",
        ));
    }
    let actions = ["add", "replace", "ablate", "map"]
        .iter()
        .filter(|k| map.contains_key(**k))
        .count();
    if actions != 1 {
        return Err(runtime_error(
            "hook: give exactly one of add, replace, ablate or map",
        ));
    }
    let tensor_of = |key: &str| -> ScriptResult<tch::Tensor> {
        map[key]
            .read_lock::<Tensor>()
            .map(|t| t.inner().shallow_clone())
            .ok_or_else(|| runtime_error(format!("hook: {key} must be a tensor")))
    };
    let edit: crate::core::model::hooks::EditFn<'a> = if map.contains_key("add") {
        let delta = tensor_of("add")?
            .f_mul_scalar(o.f64("scale", 1.0)?)
            .map_err(crate::core::Error::from)?;
        Box::new(move |x| Ok(x.f_add(&delta.f_to_kind(x.f_kind()?)?.f_to(x.device())?)?))
    } else if map.contains_key("replace") {
        let value = tensor_of("replace")?;
        Box::new(move |x| {
            let value = value.f_to_kind(x.f_kind()?)?.f_to(x.device())?;
            value.f_reshape(x.size().as_slice()).map_err(|_| {
                crate::core::Error::invalid(format!(
                    "hook: replacement of shape {:?} does not fit the activation {:?}",
                    value.size(),
                    x.size()
                ))
            })
        })
    } else if map.contains_key("ablate") {
        Box::new(|x| Ok(x.f_zeros_like()?))
    } else {
        let function = map["map"]
            .clone()
            .try_cast::<rhai::FnPtr>()
            .ok_or_else(|| runtime_error("hook: map must be a function |x| ..."))?;
        Box::new(move |x| {
            let out: Dynamic = function
                .call_within_context(ctx, (Tensor::new(x.shallow_clone()),))
                .map_err(|err| crate::core::Error::invalid(format!("hook at {site}: {err}")))?;
            out.try_cast::<Tensor>()
                .map(|t| t.inner().shallow_clone())
                .ok_or_else(|| {
                    crate::core::Error::invalid(format!(
                        "hook at {site}: the function must return a tensor"
                    ))
                })
        })
    };
    let edit: crate::core::model::hooks::EditFn<'a> = match positions {
        None => edit,
        Some(positions) => Box::new(move |x| at_positions(x, &positions, &edit)),
    };
    Ok((site, Edit::Map(edit)))
}

/// Applies `edit` to the chosen positions of `x` [batch, T, width] only;
/// negative positions count from the end, positions past the end are skipped.
fn at_positions(
    x: &tch::Tensor,
    positions: &[i64],
    edit: &dyn Fn(&tch::Tensor) -> crate::core::Result<tch::Tensor>,
) -> crate::core::Result<tch::Tensor> {
    let t = x.size()[1];
    let chosen: Vec<i64> = positions
        .iter()
        .map(|&p| if p < 0 { t + p } else { p })
        .filter(|&p| (0..t).contains(&p))
        .collect();
    if chosen.is_empty() {
        return Ok(x.shallow_clone());
    }
    let index = tch::Tensor::f_from_slice(&chosen)?.f_to(x.device())?;
    let edited = edit(&x.f_index_select(1, &index)?)?;
    Ok(x.f_index_copy(1, &index, &edited)?)
}

/// A script's hook list (`#{hooks: [...]}`), plus `steer` when given: each
/// hook `#{layer, hook: "resid_pre" | "resid_post" | "mlp", positions?, and
/// one of add: v (times scale), replace: t, ablate: true, map: |x| ...}`.
pub(crate) fn script_hooks<'a>(
    ctx: &'a NativeCallContext<'a>,
    model: &Model,
    opts: &Map,
    generating: bool,
) -> ScriptResult<Hooks<'a>> {
    let mut hooks = match opts.get("steer") {
        Some(steer) => steering_hooks(model, steer)?,
        None => Hooks::default(),
    };
    if let Some(list) = opts.get("hooks") {
        let list = list
            .read_lock::<Array>()
            .ok_or_else(|| runtime_error("hooks must be an array of hook maps"))?
            .clone();
        for hook in &list {
            let (site, edit) = parse_hook(ctx, model, hook, generating)?;
            hooks = hooks.edit(site, edit);
        }
    }
    Ok(hooks)
}

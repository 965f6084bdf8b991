//! A torch-like printer: values for small tensors, the edges plus summary
//! statistics for large ones, always with shape, dtype and device.
use crate::tensor::{device_name, kind_name, Tensor};
use crate::Result;
use tch::Kind;

/// Tensors with more elements than this are summarised.
const SUMMARISE_ABOVE: i64 = 1000;
/// Items shown at each end of a summarised dimension.
const EDGE_ITEMS: i64 = 3;

/// Renders a tensor as text, e.g.
/// `tensor([[1., 2.], [3., 4.]], shape=[2, 2], dtype=f32, device=cpu)`.
pub fn render(t: &Tensor) -> Result<String> {
    let shape = t.shape();
    let kind = t.kind()?;
    let summarise = t.numel() > SUMMARISE_ABOVE;
    let shown = if summarise { edges(t)? } else { t.clone() };
    let values = shown.to_f64_vec()?;
    let cells: Vec<String> = values.iter().map(|v| number(*v, kind, &values)).collect();
    let width = cells.iter().map(String::len).max().unwrap_or(0);
    let mut body = String::new();
    let shown_shape = shown.shape();
    nest(
        &mut body,
        &cells,
        &shown_shape,
        &shape,
        summarise,
        width,
        0,
        7,
    );
    let mut out = format!(
        "tensor({body}, shape={shape:?}, dtype={}, device={})",
        kind_name(kind),
        device_name(t.device())
    );
    if summarise && is_float(kind) {
        out.push_str(&stats_line(t)?);
    }
    if t.inner().requires_grad() {
        out.push_str(" requires_grad");
    }
    Ok(out)
}

/// Keeps the first and last `EDGE_ITEMS` of every long dimension.
fn edges(t: &Tensor) -> Result<Tensor> {
    let mut inner = t.inner().f_detach()?;
    for (dim, &size) in t.shape().iter().enumerate() {
        if size > 2 * EDGE_ITEMS {
            let dim = dim as i64;
            let head = inner.f_narrow(dim, 0, EDGE_ITEMS)?;
            let tail = inner.f_narrow(dim, size - EDGE_ITEMS, EDGE_ITEMS)?;
            inner = tch::Tensor::f_cat(&[head, tail], dim)?;
        }
    }
    Ok(Tensor::new(inner))
}

fn stats_line(t: &Tensor) -> Result<String> {
    let x = t.inner().f_detach()?.f_totype(Kind::Double)?;
    let get = |r: tch::Tensor| r.f_double_value(&[]);
    Ok(format!(
        "\n  mean={:.4} std={:.4} min={:.4} max={:.4}",
        get(x.f_mean(None::<Kind>)?)?,
        get(x.f_std(true)?)?,
        get(x.f_min()?)?,
        get(x.f_max()?)?
    ))
}

/// Writes `cells` (row-major over `shown`) as nested brackets, with `...`
/// where a dimension of the full `shape` was cut.
#[allow(clippy::too_many_arguments)]
fn nest(
    out: &mut String,
    cells: &[String],
    shown: &[i64],
    shape: &[i64],
    summarise: bool,
    width: usize,
    depth: usize,
    indent: usize,
) {
    if shown.is_empty() {
        out.push_str(cells.first().map(String::as_str).unwrap_or(""));
        return;
    }
    let count = shown[0] as usize;
    let stride = cells.len().checked_div(count).unwrap_or(0);
    let cut = summarise && shape[0] > 2 * EDGE_ITEMS;
    let last_dim = shown.len() == 1;
    let separator = if last_dim {
        ", ".to_string()
    } else {
        format!(
            ",{}{}",
            "\n".repeat(shown.len() - 1),
            " ".repeat(indent + depth + 1)
        )
    };
    out.push('[');
    for i in 0..count {
        if i > 0 {
            out.push_str(&separator);
        }
        if cut && i as i64 == EDGE_ITEMS {
            out.push_str("...");
            out.push_str(&separator);
        }
        let part = &cells[i * stride..(i + 1) * stride];
        if last_dim {
            out.push_str(&format!("{:>width$}", part[0]));
        } else {
            nest(
                out,
                part,
                &shown[1..],
                &shape[1..],
                summarise,
                width,
                depth + 1,
                indent,
            );
        }
    }
    out.push(']');
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    )
}

/// Formats one value the way torch does: integers plainly, whole floats as
/// `2.`, others with four decimals or in scientific notation when the
/// magnitudes in the tensor call for it.
fn number(v: f64, kind: Kind, all: &[f64]) -> String {
    if kind == Kind::Bool {
        return if v != 0.0 {
            "true".into()
        } else {
            "false".into()
        };
    }
    if !is_float(kind) {
        return format!("{}", v as i64);
    }
    if !v.is_finite() {
        return format!("{v}");
    }
    let finite = || all.iter().filter(|x| x.is_finite());
    let max_abs = finite().fold(0.0f64, |m, x| m.max(x.abs()));
    let min_nonzero = finite()
        .filter(|x| **x != 0.0)
        .fold(f64::INFINITY, |m, x| m.min(x.abs()));
    if finite().all(|x| x.fract() == 0.0) && max_abs < 1e8 {
        format!("{v:.0}.")
    } else if max_abs >= 1e8 || min_nonzero < 1e-4 {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: &[f64], shape: &[i64]) -> Tensor {
        Tensor::from_f64(values, shape, Kind::Float).unwrap()
    }

    #[test]
    fn small_matrices_print_every_value_aligned() {
        let text = render(&tensor(&[1.0, -2.5, 3.0, 4.0], &[2, 2])).unwrap();
        assert_eq!(
            text,
            "tensor([[ 1.0000, -2.5000],\n        [ 3.0000,  4.0000]], shape=[2, 2], dtype=f32, device=cpu)"
        );
    }

    #[test]
    fn whole_numbers_print_like_torch() {
        let text = render(&tensor(&[1.0, 2.0], &[2])).unwrap();
        assert!(text.starts_with("tensor([1., 2.]"), "{text}");
    }

    #[test]
    fn large_tensors_are_summarised_with_statistics() {
        let values: Vec<f64> = (0..5000).map(|i| i as f64 * 0.5).collect();
        let text = render(&tensor(&values, &[50, 100])).unwrap();
        assert!(text.contains("..."), "{text}");
        assert!(text.contains("shape=[50, 100]"), "{text}");
        assert!(text.contains("mean="), "{text}");
        assert!(text.lines().count() < 20, "{text}");
    }

    #[test]
    fn scalars_print_without_brackets() {
        let scalar = Tensor::new(tch::Tensor::from(3.5f64));
        assert!(render(&scalar).unwrap().starts_with("tensor(3.5000"));
    }
}

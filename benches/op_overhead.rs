//! The cost of calling a tensor op from Rhai against calling it straight
//! through tch, for small and large tensors, in one run on the same thread.
//!
//! cargo bench --bench op_overhead   (or `make bench`)
use rhai::{Dynamic, Scope};
use saelab::core::Tensor;
use saelab::script::{new_engine, EngineOptions};
use std::time::Instant;

struct Case {
    name: &'static str,
    shape: [i64; 2],
    iterations: i64,
}

fn main() {
    tch::set_num_threads(1);
    println!("one tensor op (a + b), 1 thread; best of 5 runs");
    println!(
        "{:<12} {:>12} {:>12} {:>14} {:>8}",
        "tensor", "tch µs/op", "rhai µs/op", "overhead µs", "ratio"
    );
    for case in [
        Case {
            name: "4x4",
            shape: [4, 4],
            iterations: 20_000,
        },
        Case {
            name: "64x64",
            shape: [64, 64],
            iterations: 20_000,
        },
        Case {
            name: "1024x1024",
            shape: [1024, 1024],
            iterations: 200,
        },
    ] {
        let (direct, scripted) = measure(&case);
        println!(
            "{:<12} {:>12.3} {:>12.3} {:>14.3} {:>8.2}",
            case.name,
            direct,
            scripted,
            scripted - direct,
            scripted / direct
        );
    }
}

/// Microseconds per op, directly and from a Rhai loop.
fn measure(case: &Case) -> (f64, f64) {
    let a = tch::Tensor::randn(case.shape, (tch::Kind::Float, tch::Device::Cpu));
    let b = tch::Tensor::randn(case.shape, (tch::Kind::Float, tch::Device::Cpu));
    let n = case.iterations;
    let direct = best_of(5, || {
        let start = Instant::now();
        for _ in 0..n {
            let c = a.f_add(&b).expect("add");
            let _ = std::hint::black_box(c);
        }
        start.elapsed().as_secs_f64()
    });

    let engine = new_engine(EngineOptions::default());
    let ast = engine
        .compile(format!("let c = (); for i in 0..{n} {{ c = a + b; }} c"))
        .expect("benchmark script compiles");
    let empty = engine
        .compile(format!("let c = (); for i in 0..{n} {{ c = i; }} c"))
        .expect("loop script compiles");
    let run = |ast: &rhai::AST| {
        best_of(5, || {
            let mut scope = Scope::new();
            scope.push("a", Tensor::new(a.shallow_clone()));
            scope.push("b", Tensor::new(b.shallow_clone()));
            let start = Instant::now();
            let value: Dynamic = engine
                .eval_ast_with_scope(&mut scope, ast)
                .expect("benchmark runs");
            let _ = std::hint::black_box(value);
            start.elapsed().as_secs_f64()
        })
    };
    // The loop itself is the script's, not the op's: subtract an empty loop.
    let scripted = (run(&ast) - run(&empty)).max(0.0);
    let per_op = |seconds: f64| seconds / n as f64 * 1e6;
    (per_op(direct), per_op(scripted))
}

fn best_of(runs: usize, mut f: impl FnMut() -> f64) -> f64 {
    (0..runs).map(|_| f()).fold(f64::INFINITY, f64::min)
}

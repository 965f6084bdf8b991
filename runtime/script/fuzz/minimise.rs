//! Shrinking a failing program (delta debugging's simplest form): drop one
//! statement at a time, and split a line of several statements (an idiom)
//! into one line each, keeping each change while the program still fails
//! the same way.
use super::{OutcomeClass, Program};

/// The smallest program reached from `program` for which `fails` still
/// gives `class`. `fails` runs a candidate (in a child process, since it may
/// abort) and returns its class.
pub fn minimise(
    program: &Program,
    class: OutcomeClass,
    mut fails: impl FnMut(&Program) -> OutcomeClass,
) -> Program {
    let mut best = program.clone();
    loop {
        let before = best.clone();
        best = drop_statements(best, class, &mut fails);
        best = split_statements(best, class, &mut fails);
        if best == before {
            return best;
        }
    }
}

fn drop_statements(
    mut best: Program,
    class: OutcomeClass,
    fails: &mut impl FnMut(&Program) -> OutcomeClass,
) -> Program {
    let mut i = 0;
    while i < best.statements.len() && best.statements.len() > 1 {
        let mut candidate = best.clone();
        candidate.statements.remove(i);
        if fails(&candidate) == class {
            best = candidate;
        } else {
            i += 1;
        }
    }
    best
}

/// An idiom line holds several statements: try them one per line, so the
/// next round can drop the ones that do not matter.
fn split_statements(
    best: Program,
    class: OutcomeClass,
    fails: &mut impl FnMut(&Program) -> OutcomeClass,
) -> Program {
    let split: Vec<String> = best
        .statements
        .iter()
        .flat_map(|line| {
            line.split("; ")
                .map(|s| s.trim_end_matches(';').to_string() + ";")
                .collect::<Vec<_>>()
        })
        .collect();
    let candidate = Program { statements: split };
    if candidate != best && fails(&candidate) == class {
        candidate
    } else {
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_that_do_not_matter_are_dropped() {
        let program = Program::parse("let a = 1;\nlet b = 2; let c = boom();\nlet d = 4;");
        let minimal = minimise(&program, OutcomeClass::Panic, |p| {
            if p.text().contains("boom()") {
                OutcomeClass::Panic
            } else {
                OutcomeClass::Ok
            }
        });
        assert_eq!(minimal.statements, vec!["let c = boom();"]);
    }
}

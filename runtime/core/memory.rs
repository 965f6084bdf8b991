//! Refusing up front an allocation the machine cannot hold (issue 14). With
//! Linux's default overcommit, asking for more than is free often succeeds
//! and the process is then killed by the OOM killer as the pages are
//! touched, taking a REPL session with it; libtorch only reports what the
//! kernel refuses outright. So the places where a script chooses a size
//! (new tensors, store batches) ask here first.
use crate::{Error, Result};

/// The bytes this process may still allocate: the kernel's MemAvailable,
/// lowered by an address-space limit (`ulimit -v`) when one is set.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let available = meminfo
        .as_deref()
        .and_then(|text| kib_field(text, "MemAvailable:"));
    let limits = std::fs::read_to_string("/proc/self/limits").ok();
    let address_space = limits.as_deref().and_then(address_space_limit);
    match (available, address_space) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An error unless `bytes` (`None`: the size overflowed) fits in what is
/// available. `what` names the allocation for the message.
pub fn ensure_fits(bytes: Option<u64>, what: impl FnOnce() -> String) -> Result<()> {
    let Some(available) = available_bytes() else {
        return Ok(());
    };
    match bytes {
        Some(bytes) if bytes <= available => Ok(()),
        Some(bytes) => Err(Error::invalid(format!(
            "{} needs {}, more than the {} of memory available",
            what(),
            human(bytes),
            human(available)
        ))),
        None => Err(Error::invalid(format!(
            "{} is larger than any machine's memory",
            what()
        ))),
    }
}

/// The bytes of `numel(shape)` elements of `element_size` bytes, `None` on overflow.
pub fn bytes_of(shape: &[i64], element_size: u64) -> Option<u64> {
    shape.iter().try_fold(element_size, |acc, &d| {
        u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

fn kib_field(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// "Max address space   8589934592   8589934592   bytes" → the soft limit.
fn address_space_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_beyond_memory_or_overflowing_is_refused_with_its_size() {
        assert!(ensure_fits(bytes_of(&[2, 3], 4), || "a small tensor".into()).is_ok());
        let err = ensure_fits(bytes_of(&[1 << 40, 1 << 10], 4), || {
            "zeros [2^40, 1024]".into()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("zeros [2^40, 1024] needs 4503.6 TB, more than"),
            "{err}"
        );
        let err = ensure_fits(bytes_of(&[i64::MAX, 4], 4), || "x".into()).unwrap_err();
        assert!(err.to_string().contains("larger than any machine's memory"));
    }

    #[test]
    fn limits_files_parse() {
        let limits = "Max address space         8589934592           unlimited            bytes\n";
        assert_eq!(address_space_limit(limits), Some(8589934592));
        assert_eq!(
            address_space_limit("Max address space  unlimited  unlimited  bytes"),
            None
        );
        assert_eq!(
            kib_field("MemAvailable:   16 kB\n", "MemAvailable:"),
            Some(16384)
        );
    }
}

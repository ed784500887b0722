//! Machine limits for sizes given on the command line or in files: how much
//! memory is available, and a readable check that a planned allocation fits,
//! so a huge `--frames` or `--batch-size` is refused with the figure instead
//! of aborting on allocation or running for hours.

/// Most worker threads any headlab command accepts.
pub const MAX_THREADS: usize = 1024;

/// Memory the system can still give this process, in bytes (`MemAvailable`
/// of /proc/meminfo; None where that is not readable).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// Bytes as a short human figure (e.g. `3.2 GiB`).
pub fn fmt_bytes(b: u128) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The product of `factors` (element counts and a byte size), or None on overflow.
pub fn product(factors: &[usize]) -> Option<u128> {
    factors.iter().try_fold(1u128, |acc, &f| acc.checked_mul(f as u128))
}

/// Ok when `bytes` (None: overflowed) fit in the available memory; otherwise
/// a sentence naming `what`, the estimate and what is available.
pub fn check_fits(what: &str, bytes: Option<u128>) -> Result<(), String> {
    let avail = available_memory();
    match (bytes, avail) {
        (None, _) => Err(format!("{what} would need more memory than any machine has (the size overflows)")),
        (Some(b), Some(a)) if b > a as u128 => Err(format!(
            "{what} would need about {} of memory, and {} is available",
            fmt_bytes(b),
            fmt_bytes(a as u128)
        )),
        (Some(b), None) if b > (1u128 << 40) => Err(format!("{what} would need about {}", fmt_bytes(b))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_against_memory() {
        assert_eq!(product(&[2, 3, 4]), Some(24));
        assert_eq!(product(&[usize::MAX, usize::MAX, 4]), None);
        assert!(check_fits("x", Some(1024)).is_ok());
        let e = check_fits("simulating 10000000000 frames", product(&[10_000_000_000, 256, 16, 2, 2, 4])).unwrap_err();
        assert!(e.contains("10000000000 frames") && e.contains("TiB"), "{e}");
        assert!(check_fits("x", None).unwrap_err().contains("overflows"));
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}

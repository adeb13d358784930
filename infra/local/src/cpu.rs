//! CPU time of a process, for the benches' reports (Linux `/proc`).

/// CPU seconds (user + system) process `pid` has used (`"self"` for this one), from
/// `/proc/<pid>/stat` in clock ticks of 1/100 s. `None` where there is no such file.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the name and state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_used_some_cpu() {
        if std::path::Path::new("/proc/self/stat").exists() {
            let spent = (0..200_000u64).fold(0u64, |a, b| a.wrapping_add(b * b));
            assert!(spent > 0);
            assert!(super::cpu_seconds("self").is_some_and(|s| s >= 0.0));
        }
        assert_eq!(super::cpu_seconds("no-such-process"), None);
    }
}

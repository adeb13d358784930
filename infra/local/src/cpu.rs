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

/// CPU seconds used by process `pid` and its living child processes (the emulator runs
/// DynamoDB in a child of its own), read from `/proc/*/stat`. `None` where `pid` has no stat.
pub fn tree_cpu_seconds(pid: &str) -> Option<f64> {
    let own = cpu_seconds(pid)?;
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|child| parent_pid(child).as_deref() == Some(pid))
        .filter_map(|child| tree_cpu_seconds(&child))
        .sum();
    Some(own + children)
}

/// The parent pid of `pid` (field 4 of `/proc/<pid>/stat`).
fn parent_pid(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1).map(str::to_owned)
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

    #[test]
    fn a_process_tree_counts_its_children() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .expect("sh runs");
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let me = std::process::id().to_string();
        let own = super::cpu_seconds(&me).expect("own stat");
        let tree = super::tree_cpu_seconds(&me).expect("own stat");
        let child_cpu = super::cpu_seconds(&child.id().to_string()).expect("child stat");
        let _ = child.kill();
        let _ = child.wait();
        assert!(child_cpu > 0.0, "the child's loop used CPU");
        assert!(
            tree >= own + child_cpu - 0.02,
            "tree {tree} own {own} child {child_cpu}"
        );
    }
}

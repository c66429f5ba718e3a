//! Reading another process's CPU time and resident memory from Linux `/proc`
//! (proc(5)): `stat` for utime + stime, `task/*/schedstat` for nanosecond run time,
//! `status` for `VmRSS`. The parsers are pure functions over the file text so they can be
//! tested without a process; the readers are thin wrappers.

use std::path::Path;

/// proc(5) `/proc/<pid>/stat`: `utime` and `stime` are fields 14 and 15, in clock ticks.
/// Field 2 (`comm`) is parenthesised and may itself contain spaces or `)`, so fields are
/// counted from the *last* `)`; the field after it is field 3 (`state`).
pub fn parse_stat_user_sys(stat: &str) -> Option<(u64, u64)> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// utime + stime from `/proc/<pid>/stat`, in clock ticks.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let (u, s) = parse_stat_user_sys(stat)?;
    u.checked_add(s)
}

/// `/proc/<pid>/task/<tid>/schedstat`: the first of three numbers is the time the task
/// spent on a CPU, in nanoseconds (Documentation/scheduler/sched-stats.rst).
pub fn parse_schedstat_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_ascii_whitespace().next()?.parse().ok()
}

/// `VmRSS:    1234 kB` from `/proc/<pid>/status`, in KiB (proc(5) says "kB" but means KiB).
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix("VmRSS:")?;
        let mut it = v.split_ascii_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        match it.next() {
            Some("kB") | None => Some(n),
            Some(_) => None,
        }
    })
}

/// Clock ticks per second for `stat` times. Without libc there is no `sysconf(_SC_CLK_TCK)`;
/// Linux has reported 100 (`USER_HZ`) to user space on every architecture we run on.
pub const CLOCK_TICKS_PER_SEC: u64 = 100;

/// One CPU-time sample of a whole process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CpuSample {
    /// Sum of the run time of the live threads, ns (`None` if schedstat is unavailable).
    pub sched_ns: Option<u64>,
    /// utime + stime of the process (exited threads included), in clock ticks.
    pub ticks: u64,
    /// The kernel-mode part of `ticks` (stime).
    pub sys_ticks: u64,
}

impl CpuSample {
    /// Best available CPU time in ns: schedstat (ns precision) if present, else ticks.
    pub fn ns(&self) -> u64 {
        self.sched_ns.unwrap_or(
            self.ticks
                .saturating_mul(1_000_000_000 / CLOCK_TICKS_PER_SEC),
        )
    }
}

/// Sample the CPU time of `pid` (all threads).
pub fn cpu(pid: u32) -> std::io::Result<CpuSample> {
    let base = format!("/proc/{pid}");
    let stat = std::fs::read_to_string(format!("{base}/stat"))?;
    let (user, sys) = parse_stat_user_sys(&stat).ok_or_else(|| bad_data("stat"))?;
    Ok(CpuSample {
        sched_ns: sched_ns(Path::new(&format!("{base}/task"))),
        ticks: user.saturating_add(sys),
        sys_ticks: sys,
    })
}

fn sched_ns(tasks: &Path) -> Option<u64> {
    let mut total: u64 = 0;
    for entry in std::fs::read_dir(tasks).ok()?.flatten() {
        // A thread may exit between listing and reading: skip it rather than fail.
        if let Ok(s) = std::fs::read_to_string(entry.path().join("schedstat")) {
            total = total.saturating_add(parse_schedstat_ns(&s)?);
        }
    }
    Some(total)
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_rss_kib(&status).ok_or_else(|| bad_data("status"))
}

fn bad_data(file: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("unexpected /proc {file} format"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const STAT: &str = "4242 (fedcheck) S 1 4242 4242 0 -1 4194560 1180 0 0 0 37 12 0 0 20 0 \
                        3 0 123456 12345678 900 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 \
                        17 1 0 0 0 0 0\n";

    #[rstest]
    #[case::plain(STAT, Some(49))]
    #[case::comm_with_paren_and_space(
        "7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1\n",
        Some(11)
    )]
    #[case::truncated("7 (x) R 1 7 7 0 -1 0 0 0 0 0 5", None)]
    #[case::not_a_number("7 (x) R 1 7 7 0 -1 0 0 0 0 0 five 6 0", None)]
    #[case::no_comm("", None)]
    fn stat_ticks(#[case] text: &str, #[case] want: Option<u64>) {
        assert_eq!(parse_stat_ticks(text), want);
    }

    #[test]
    fn stat_user_and_sys_apart() {
        assert_eq!(parse_stat_user_sys(STAT), Some((37, 12)));
    }

    #[rstest]
    #[case("394155145 433604126 115\n", Some(394_155_145))]
    #[case("0 0 0", Some(0))]
    #[case("", None)]
    #[case("x 1 2", None)]
    fn schedstat(#[case] text: &str, #[case] want: Option<u64>) {
        assert_eq!(parse_schedstat_ns(text), want);
    }

    #[rstest]
    #[case(
        "Name:\tfedcheck\nVmHWM:\t  9000 kB\nVmRSS:\t    8123 kB\nRssAnon:\t 100 kB\n",
        Some(8123)
    )]
    #[case("Name:\tkthreadd\nState:\tS\n", None)]
    #[case("VmRSS:\tlots kB\n", None)]
    #[case("VmRSS:\t12 MB\n", None)]
    fn status_rss(#[case] text: &str, #[case] want: Option<u64>) {
        assert_eq!(parse_status_rss_kib(text), want);
    }

    #[test]
    fn ns_prefers_schedstat_and_falls_back_to_ticks() {
        let with = CpuSample {
            sched_ns: Some(5),
            ticks: 3,
            sys_ticks: 1,
        };
        assert_eq!(with.ns(), 5);
        let without = CpuSample {
            sched_ns: None,
            ticks: 3,
            sys_ticks: 1,
        };
        assert_eq!(without.ns(), 30_000_000);
    }

    /// The readers work on a live process (this one), not only on canned text.
    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        let s = cpu(pid).expect("own /proc/<pid>/stat is readable");
        assert!(s.sched_ns.is_some_and(|n| n > 0) || s.ticks > 0);
        assert!(rss_kib(pid).expect("own status is readable") > 0);
    }
}

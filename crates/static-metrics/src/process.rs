//! Process metrics, named as Prometheus's own process collector (client_golang's
//! `NewProcessCollector`) names them, so dashboards and alerts written for any Go service work
//! unchanged: CPU seconds, resident and virtual memory, open and maximum file descriptors, and
//! the start time.
//!
//! They are opt-in per registry ([`Registry::set_process_metrics`](crate::Registry)), read at
//! scrape time, and appended after the registry's own families with its constant labels.
//!
//! Reading them allocates nothing once the process start time has been computed (on the first
//! read): `/proc/self/stat` is read into a stack buffer, descriptors are counted with
//! `getdents64` into a stack buffer (no `opendir`, which would `malloc` a `DIR`), and the limit
//! comes from `getrlimit`. Elsewhere than Linux, [`read`] reports the platform as unsupported
//! and no family is written.

use std::io;

use crate::encode::Format;
use crate::format::escape::{write_help_openmetrics, write_help_text};
use crate::format::number::write_f64;

/// `(name, help, is_counter)` of every family, in exposition order. The names and help texts
/// are client_golang's (`prometheus/process_collector.go`).
pub const FAMILIES: [(&str, &str, bool); 6] = [
    (
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        true,
    ),
    (
        "process_open_fds",
        "Number of open file descriptors.",
        false,
    ),
    (
        "process_max_fds",
        "Maximum number of open file descriptors.",
        false,
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        false,
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        false,
    ),
    (
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        false,
    ),
];

/// One reading of the process's figures. A figure that could not be read is `None` and its
/// family is left out of the exposition (client_golang skips what it cannot read, too).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors (not counting the one used to count them).
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors (`RLIMIT_NOFILE`).
    pub max_fds: Option<u64>,
    /// Virtual memory size, in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// Resident set size, in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    fn value(&self, family: usize) -> Option<f64> {
        match family {
            0 => self.cpu_seconds,
            1 => self.open_fds.map(|v| v as f64),
            2 => self.max_fds.map(|v| v as f64),
            3 => self.virtual_memory_bytes.map(|v| v as f64),
            4 => self.resident_memory_bytes.map(|v| v as f64),
            5 => self.start_time_seconds,
            _ => None,
        }
    }
}

/// Reads the figures of this process now. Fails only where process metrics are not supported
/// (not Linux); on Linux a figure that cannot be read is `None`.
pub fn read() -> io::Result<ProcessStats> {
    imp::read()
}

/// Appends the families `keep` accepts, with `stats`' values, in `format`. `const_labels` is
/// the escaped `name="value",…` text written on every sample (empty for none). Writes nothing
/// for a family whose value is absent.
pub fn encode(
    stats: &ProcessStats,
    format: Format,
    const_labels: &str,
    mut keep: impl FnMut(&str) -> bool,
    out: &mut Vec<u8>,
) {
    for (i, (name, help, counter)) in FAMILIES.iter().enumerate() {
        let Some(value) = stats.value(i) else {
            continue;
        };
        if !keep(name) {
            continue;
        }
        let type_name: &[u8] = if *counter { b"counter" } else { b"gauge" };
        match format {
            Format::Protobuf => {
                use crate::encode::protobuf::{write_family, write_metric_label_text, MetricType};
                let kind = if *counter {
                    MetricType::Counter
                } else {
                    MetricType::Gauge
                };
                write_family(out, name, help, kind, |out| {
                    write_metric_label_text(out, const_labels, kind, value)
                });
                continue;
            }
            Format::Text => {
                out.extend_from_slice(b"# HELP ");
                out.extend_from_slice(name.as_bytes());
                out.push(b' ');
                write_help_text(out, help);
                out.extend_from_slice(b"\n# TYPE ");
                out.extend_from_slice(name.as_bytes());
                out.push(b' ');
                out.extend_from_slice(type_name);
                out.push(b'\n');
            }
            Format::OpenMetrics => {
                // OpenMetrics names a counter family without its `_total` sample suffix.
                let family = if *counter {
                    name.strip_suffix("_total").unwrap_or(name)
                } else {
                    name
                };
                out.extend_from_slice(b"# TYPE ");
                out.extend_from_slice(family.as_bytes());
                out.push(b' ');
                out.extend_from_slice(type_name);
                out.extend_from_slice(b"\n# HELP ");
                out.extend_from_slice(family.as_bytes());
                out.push(b' ');
                write_help_openmetrics(out, help);
                out.push(b'\n');
            }
        }
        out.extend_from_slice(name.as_bytes());
        if !const_labels.is_empty() {
            out.push(b'{');
            out.extend_from_slice(const_labels.as_bytes());
            out.push(b'}');
        }
        out.push(b' ');
        write_f64(out, value);
        out.push(b'\n');
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io::{self, Read as _};
    use std::sync::OnceLock;

    use super::ProcessStats;

    /// `/proc/self/stat` is one line of a few hundred bytes; the command name in it is at most
    /// 16 bytes, so this always holds it whole.
    const STAT_BUFFER: usize = 1024;

    pub(super) fn read() -> io::Result<ProcessStats> {
        let mut stats = ProcessStats {
            open_fds: count_open_fds(),
            max_fds: max_fds(),
            ..ProcessStats::default()
        };
        let mut buffer = [0u8; STAT_BUFFER];
        if let Some(stat) = read_small("/proc/self/stat", &mut buffer) {
            if let Some(fields) = stat_fields(stat) {
                let ticks = clock_ticks();
                stats.cpu_seconds = Some((fields.utime + fields.stime) as f64 / ticks);
                stats.virtual_memory_bytes = Some(fields.vsize);
                stats.resident_memory_bytes = Some(fields.rss_pages.saturating_mul(page_size()));
                stats.start_time_seconds =
                    boot_time().map(|boot| boot + fields.start_ticks as f64 / ticks);
            }
        }
        Ok(stats)
    }

    /// The file's bytes, if it was readable and fit in `buffer`.
    fn read_small<'b>(path: &str, buffer: &'b mut [u8]) -> Option<&'b [u8]> {
        // `File::open` converts a short path on the stack; nothing here allocates.
        let mut file = std::fs::File::open(path).ok()?;
        let mut len = 0;
        loop {
            match file.read(&mut buffer[len..]) {
                Ok(0) => return Some(&buffer[..len]),
                Ok(n) => {
                    len += n;
                    if len == buffer.len() {
                        return None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// The fields of `/proc/<pid>/stat` used here (proc(5) numbers them from 1).
    #[derive(Debug, PartialEq)]
    pub(super) struct StatFields {
        pub(super) utime: u64,
        pub(super) stime: u64,
        pub(super) start_ticks: u64,
        pub(super) vsize: u64,
        pub(super) rss_pages: u64,
    }

    pub(super) fn stat_fields(stat: &[u8]) -> Option<StatFields> {
        // The command name (field 2) is in parentheses and may itself hold spaces and `)`: the
        // fields resume after the last `)`.
        let close = stat.iter().rposition(|&b| b == b')')?;
        let mut fields = stat[close + 1..]
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        // Field 3 (state) is the first after the name; utime is field 14.
        let mut nth = |skip: usize| -> Option<u64> { parse_u64(fields.nth(skip)?) };
        let utime = nth(11)?; // field 14
        let stime = nth(0)?; // 15
        let start_ticks = nth(6)?; // 22
        let vsize = nth(0)?; // 23
        let rss_pages = nth(0)?; // 24
        Some(StatFields {
            utime,
            stime,
            start_ticks,
            vsize,
            rss_pages,
        })
    }

    fn parse_u64(digits: &[u8]) -> Option<u64> {
        if digits.is_empty() {
            return None;
        }
        digits.iter().try_fold(0u64, |acc, &d| {
            if d.is_ascii_digit() {
                acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            } else {
                None
            }
        })
    }

    fn clock_ticks() -> f64 {
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks > 0 {
            ticks as f64
        } else {
            // The value every Linux ABI has used; sysconf only fails for unknown names.
            100.0
        }
    }

    fn page_size() -> u64 {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
    }

    /// The boot time (`btime` of `/proc/stat`), read once: it never changes, and `/proc/stat`
    /// can be tens of kilobytes on a large machine, so it is read with an allocation once
    /// instead of into a stack buffer at every scrape.
    fn boot_time() -> Option<f64> {
        static BOOT: OnceLock<Option<f64>> = OnceLock::new();
        *BOOT.get_or_init(|| {
            let stat = std::fs::read_to_string("/proc/stat").ok()?;
            stat.lines()
                .find_map(|line| line.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|v| v as f64)
        })
    }

    fn max_fds() -> Option<u64> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid, writable rlimit.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        // rlim_t is u64 on every Linux target.
        #[allow(clippy::unnecessary_cast)]
        Some(limit.rlim_cur as u64)
    }

    /// Counts the entries of `/proc/self/fd`, minus `.`, `..` and the descriptor reading it.
    fn count_open_fds() -> Option<u64> {
        // SAFETY: a NUL-terminated path and plain flags.
        let fd = unsafe {
            libc::open(
                c"/proc/self/fd".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // u64 elements keep the buffer aligned for `linux_dirent64`.
        let mut buffer = [0u64; 512];
        let mut entries = 0u64;
        let result = loop {
            // SAFETY: `buffer` is writable for its whole byte length.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    fd,
                    buffer.as_mut_ptr().cast::<u8>(),
                    std::mem::size_of_val(&buffer),
                )
            };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                break None;
            }
            if n == 0 {
                break Some(entries);
            }
            // SAFETY: the kernel wrote `n` bytes of records; reading them as bytes is sound.
            let bytes =
                unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), n as usize) };
            entries += count_dirents(bytes);
        };
        // SAFETY: `fd` was opened above and is closed once.
        unsafe { libc::close(fd) };
        // Every descriptor but our own directory handle.
        result.map(|n| n.saturating_sub(1))
    }

    /// Entries of a `getdents64` result other than `.` and `..`. A record is `d_ino` (8 bytes),
    /// `d_off` (8), `d_reclen` (2), `d_type` (1), then the NUL-terminated name.
    pub(super) fn count_dirents(mut bytes: &[u8]) -> u64 {
        let mut count = 0;
        while bytes.len() >= 19 {
            let reclen = usize::from(u16::from_ne_bytes([bytes[16], bytes[17]]));
            if reclen < 19 || reclen > bytes.len() {
                break;
            }
            let name = &bytes[19..reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." {
                count += 1;
            }
            bytes = &bytes[reclen..];
        }
        count
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;

    use super::ProcessStats;

    pub(super) fn read() -> io::Result<ProcessStats> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "process metrics are read from /proc, which only Linux has",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        // Fields 1..=24 of proc(5), with utime 7, stime 3, starttime 900, vsize 4096, rss 2.
        let line = b"42 (a b) c) S 1 42 42 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 900 4096 2 18446744073709551615\n";
        let fields = imp::stat_fields(line).expect("parses");
        assert_eq!(
            fields,
            imp::StatFields {
                utime: 7,
                stime: 3,
                start_ticks: 900,
                vsize: 4096,
                rss_pages: 2,
            }
        );
        assert_eq!(imp::stat_fields(b"42 (x) S 1 2"), None);
        assert_eq!(imp::stat_fields(b"no parenthesis"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn dirent_records_are_counted_without_dot_entries() {
        fn record(name: &[u8]) -> Vec<u8> {
            let mut r = vec![0u8; 19];
            r.extend_from_slice(name);
            r.push(0);
            while r.len() % 8 != 0 {
                r.push(0);
            }
            let len = r.len() as u16;
            r[16..18].copy_from_slice(&len.to_ne_bytes());
            r
        }
        let mut bytes = Vec::new();
        for name in [&b"."[..], b"..", b"0", b"1", b"255"] {
            bytes.extend(record(name));
        }
        assert_eq!(imp::count_dirents(&bytes), 3);
        // A truncated record stops the count instead of reading past the end.
        assert_eq!(imp::count_dirents(&bytes[..bytes.len() - 3]), 2);
    }

    #[test]
    fn encodes_both_formats_with_const_labels_and_skips_absent_values() {
        let stats = ProcessStats {
            cpu_seconds: Some(1.5),
            open_fds: Some(9),
            max_fds: None,
            virtual_memory_bytes: Some(1 << 20),
            resident_memory_bytes: Some(4096),
            start_time_seconds: Some(1.7e9),
        };
        let mut text = Vec::new();
        encode(&stats, Format::Text, "instance=\"n1\"", |_| true, &mut text);
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with(
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total{instance=\"n1\"} 1.5\n"
        ));
        assert!(text.contains("process_virtual_memory_bytes{instance=\"n1\"} 1.048576e+06\n"));
        assert!(text.contains("process_start_time_seconds{instance=\"n1\"} 1.7e+09\n"));
        assert!(!text.contains("process_max_fds"));
        let mut om = Vec::new();
        encode(
            &stats,
            Format::OpenMetrics,
            "",
            |n| n.contains("cpu"),
            &mut om,
        );
        assert_eq!(
            String::from_utf8(om).unwrap(),
            "# TYPE process_cpu_seconds counter\n\
             # HELP process_cpu_seconds Total user and system CPU time spent in seconds.\n\
             process_cpu_seconds_total 1.5\n"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_plausible_figures_of_this_process() {
        let stats = read().unwrap();
        let rss = stats.resident_memory_bytes.unwrap();
        assert!(rss > 0 && rss <= stats.virtual_memory_bytes.unwrap());
        let open = stats.open_fds.unwrap();
        // stdin/stdout/stderr at least, below the limit.
        assert!(open >= 3 && open <= stats.max_fds.unwrap(), "{open}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = stats.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start}"
        );
        assert!(stats.cpu_seconds.unwrap() >= 0.0);
    }
}

//! A description of the machine a run happened on, read from /proc, for the results page.

use std::path::Path;

/// What the results need to say about the machine.
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// File system type and device of the directory the databases live in.
    pub filesystem: String,
}

impl Machine {
    pub fn describe(data_dir: &Path) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = field(&cpuinfo, "model name")
            .unwrap_or("unknown CPU")
            .to_string();
        let meminfo = read("/proc/meminfo");
        let memory_kib: f64 = field(&meminfo, "MemTotal")
            .and_then(|v| v.trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: memory_kib / (1 << 20) as f64,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            filesystem: filesystem_of(data_dir, &read("/proc/self/mounts")),
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} logical CPUs ({}), {:.0} GiB RAM, {}, Linux {}",
            self.cpus, self.cpu, self.memory_gib, self.filesystem, self.kernel
        )
    }
}

/// The load averages (1, 5, 15 minutes), to tell a quiet run from a busy one.
pub fn load_average() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The value of the first `name: value` line in a /proc file.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

/// "ext4 on /dev/vda": the mount with the longest mount point that contains `dir`.
fn filesystem_of(dir: &Path, mounts: &str) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    mounts
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (device, point, kind) = (parts.next()?, parts.next()?, parts.next()?);
            dir.starts_with(point)
                .then(|| (point.len(), format!("{kind} on {device}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown file system".to_string(), |(_, fs)| fs)
}

/// User and system CPU time of this process so far, from `/proc/self/stat` (`None` where there is
/// none). Its clock ticks are taken as 1/100 s, `USER_HZ` on every Linux this bench runs on; over a
/// bulk load of seconds the 10 ms resolution is far below the noise.
pub fn cpu_time() -> Option<CpuTime> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of proc(5); `fields[0]` is field 3.
    let ticks = |i: usize| -> Option<std::time::Duration> {
        let t: u64 = fields.get(i)?.parse().ok()?;
        Some(std::time::Duration::from_millis(t * 10))
    };
    Some(CpuTime {
        user: ticks(11)?,
        system: ticks(12)?,
    })
}

/// CPU time spent by the process, in user space and in the kernel.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTime {
    pub user: std::time::Duration,
    pub system: std::time::Duration,
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

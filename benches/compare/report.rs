//! The results: a table on stdout, a Markdown page and an SVG bar chart of the defrag figures.

use std::fmt::Write;
use std::time::Duration;

use crate::machine::CpuTime;

/// Bytes in the "GB" of seconds per GB: 10^9, as disk speeds are quoted.
const GB: f64 = 1e9;
const MIB: f64 = (1 << 20) as f64;

/// One engine's figure for one workload.
pub struct Row {
    pub engine: &'static str,
    pub workload: String,
    /// The time of the single run, or the median of the repetitions.
    pub time: Duration,
    /// How much work `time` covers, in `unit`.
    pub work: f64,
    /// What is counted, per second: "keys/s", "reads/s", "scans/s".
    pub unit: &'static str,
    /// The CPU time the process spent on the work, where it was measured (the bulk loads).
    pub cpu: Option<CpuTime>,
    /// The disk space the engine's files took after the work, where it was measured (the bulk
    /// loads).
    pub disk: Option<u64>,
}

impl Row {
    pub fn rate(&self) -> f64 {
        self.work / self.time.as_secs_f64()
    }

    /// User and system CPU per unit of work, in microseconds, as "user + system µs".
    pub fn cpu_per_unit(&self) -> String {
        match self.cpu {
            Some(cpu) => format!(
                "{:.1} + {:.1} µs",
                cpu.user.as_secs_f64() * 1e6 / self.work,
                cpu.system.as_secs_f64() * 1e6 / self.work
            ),
            None => String::new(),
        }
    }

    /// The disk space after the work, in MiB, or nothing.
    pub fn disk_used(&self) -> String {
        self.disk.map_or(String::new(), mib)
    }
}

/// One engine's way from a fragmented file to a compact one, and the plain copy of its output.
pub struct DefragRow {
    pub engine: &'static str,
    pub method: &'static str,
    /// Key and value bytes of the live entries.
    pub live_bytes: u64,
    pub size_before: u64,
    pub size_after: u64,
    pub time: Duration,
    /// Copying `size_after` bytes with plain reads and writes and a sync, on the same disk.
    pub copy_time: Duration,
}

impl DefragRow {
    pub fn seconds_per_gb(&self) -> f64 {
        self.time.as_secs_f64() / (self.size_after as f64 / GB)
    }

    pub fn copy_seconds_per_gb(&self) -> f64 {
        self.copy_time.as_secs_f64() / (self.size_after as f64 / GB)
    }

    pub fn ratio_to_copy(&self) -> f64 {
        self.time.as_secs_f64() / self.copy_time.as_secs_f64()
    }
}

#[derive(Default)]
pub struct Results {
    pub rows: Vec<Row>,
    pub defrags: Vec<DefragRow>,
}

impl Results {
    /// Prints a row as soon as it is measured, so a long run shows progress.
    pub fn push(&mut self, row: Row) {
        println!(
            "  {:<6} {:<44} {:>10}  {:>12} {}  {}{}",
            row.engine,
            row.workload,
            duration(row.time),
            thousands(row.rate()),
            row.unit,
            row.cpu_per_unit(),
            row.disk
                .map_or(String::new(), |_| format!("; on disk {}", row.disk_used()))
        );
        self.rows.push(row);
    }

    pub fn push_defrag(&mut self, row: DefragRow) {
        println!(
            "  {:<6} {:<44} {:>10}  {:>8.2} s/GB, plain copy {:.2} s/GB ({:.2}x); {} -> {}",
            row.engine,
            row.method,
            duration(row.time),
            row.seconds_per_gb(),
            row.copy_seconds_per_gb(),
            row.ratio_to_copy(),
            mib(row.size_before),
            mib(row.size_after),
        );
        self.defrags.push(row);
    }

    /// The rate of folio on the same workload, which the other engines are compared with.
    fn folio_rate(&self, workload: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.engine == "folio" && r.workload == workload)
            .map(Row::rate)
    }

    fn folio_defrag_time(&self) -> Option<Duration> {
        self.defrags
            .iter()
            .find(|r| r.engine == "folio")
            .map(|r| r.time)
    }

    /// The throughput table and the defrag table, in Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "| workload | engine | time | rate | rate ÷ folio's | CPU per op, user + system | on disk after |\n\
             |---|---|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            let versus = self
                .folio_rate(&r.workload)
                .map_or("".to_string(), |f| format!("{:.2}", r.rate() / f));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} {} | {} | {} | {} |",
                r.workload,
                r.engine,
                duration(r.time),
                thousands(r.rate()),
                r.unit,
                versus,
                r.cpu_per_unit(),
                r.disk_used()
            );
        }
        if !self.defrags.is_empty() {
            s.push_str(
                "\n| engine | way to a compact file | live data | file before | file after \
                 | time | s/GB written | plain copy, s/GB | ÷ plain copy | time ÷ folio's |\n\
                 |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            );
            for r in &self.defrags {
                let versus = self.folio_defrag_time().map_or("".to_string(), |f| {
                    format!("{:.2}", r.time.as_secs_f64() / f.as_secs_f64())
                });
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} |",
                    r.engine,
                    r.method,
                    mib(r.live_bytes),
                    mib(r.size_before),
                    mib(r.size_after),
                    duration(r.time),
                    r.seconds_per_gb(),
                    r.copy_seconds_per_gb(),
                    r.ratio_to_copy(),
                    versus
                );
            }
        }
        s
    }

    /// A grouped bar chart: for each engine, seconds per GB of its compaction and of the plain
    /// copy of its output, labelled with the time taken and the bytes written.
    pub fn defrag_svg(&self, caption: &str) -> String {
        const W: f64 = 720.0;
        const H: f64 = 420.0;
        const LEFT: f64 = 70.0;
        const RIGHT: f64 = 20.0;
        const TOP: f64 = 60.0;
        const BOTTOM: f64 = 100.0;
        const COMPACTION: &str = "#3b6ea5";
        const COPY: &str = "#b8c9dc";
        let plot_w = W - LEFT - RIGHT;
        let plot_h = H - TOP - BOTTOM;
        let max = self
            .defrags
            .iter()
            .flat_map(|r| [r.seconds_per_gb(), r.copy_seconds_per_gb()])
            .fold(0.0, f64::max);
        let step = nice_step(max / 5.0);
        let top = (max / step).ceil().max(1.0) * step;
        let y = |v: f64| TOP + plot_h * (1.0 - v / top);

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="13">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="16">Seconds per GB of compact output (lower is better)</text>"#,
            W / 2.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="44" text-anchor="middle" fill="#555">{}</text>"##,
            W / 2.0,
            escape(caption)
        );
        // Axis and grid.
        let mut v = 0.0;
        while v <= top + step / 2.0 {
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y(v) + 4.0,
                y = y(v),
                v = trim(v),
            );
            v += step;
        }
        let _ = writeln!(
            s,
            r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">s/GB</text>"#,
            TOP + plot_h / 2.0
        );
        // Bars: two per engine.
        let group_w = plot_w / self.defrags.len().max(1) as f64;
        let bar_w = group_w * 0.3;
        for (i, r) in self.defrags.iter().enumerate() {
            let x0 = LEFT + group_w * i as f64 + group_w * 0.2;
            for (j, (value, color)) in [
                (r.seconds_per_gb(), COMPACTION),
                (r.copy_seconds_per_gb(), COPY),
            ]
            .into_iter()
            .enumerate()
            {
                let x = x0 + bar_w * j as f64;
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{value:.2}</text>"#,
                    y(value),
                    TOP + plot_h - y(value),
                    x + bar_w / 2.0,
                    y(value) - 5.0,
                );
            }
            let cx = x0 + bar_w;
            let _ = writeln!(
                s,
                r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
                TOP + plot_h + 20.0,
                escape(r.engine),
                TOP + plot_h + 38.0,
                escape(r.method),
            );
            // Seconds per GB alone would flatter a less compact output: say what was written.
            let _ = writeln!(
                s,
                r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{} to write {}</text>"##,
                TOP + plot_h + 56.0,
                duration(r.time),
                mib(r.size_after),
            );
        }
        // Legend.
        let ly = H - 18.0;
        let _ = writeln!(
            s,
            r#"<rect x="{LEFT}" y="{}" width="12" height="12" fill="{COMPACTION}"/><text x="{}" y="{ly}">the engine's compaction</text>"#,
            ly - 10.0,
            LEFT + 18.0
        );
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{COPY}"/><text x="{}" y="{ly}">plain copy of its output (read, write, fsync)</text>"#,
            LEFT + 220.0,
            ly - 10.0,
            LEFT + 238.0
        );
        s.push_str("</svg>\n");
        s
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

/// A tick label without float noise: 0.30000000000000004 -> "0.3".
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// "1.23 s", "45.6 ms", "789 µs".
pub fn duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// "1,234,567".
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "256.0 MiB".
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

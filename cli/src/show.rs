//! Showing things to a person: bytes as safe text, sizes and counts, and errors as messages.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::Failure;

/// Bytes as one line of text that is safe on a terminal: printable text as it is, everything else
/// escaped (`\n`, `\t`, `\r`, `\\`, `\xNN` for other bytes, `\u{NNNN}` for invisible characters).
/// The result never holds a control character, a tab or a newline.
pub fn bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                '\r' => s.push_str("\\r"),
                c if (c as u32) < 0x80 && c.is_control() => {
                    let _ = write!(s, "\\x{:02x}", c as u32);
                }
                c if c.is_control() || invisible(c) => {
                    let _ = write!(s, "\\u{{{:04x}}}", c as u32);
                }
                c => s.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(s, "\\x{byte:02x}");
        }
    }
    s
}

/// Characters that change how a terminal shows the text around them, or show as nothing.
fn invisible(c: char) -> bool {
    matches!(c as u32, 0x200b..=0x200f | 0x202a..=0x202e | 0x2066..=0x2069 | 0xfeff)
}

/// At most `max` bytes of `b`, shown with [`bytes`], and how many bytes were left out.
pub fn bytes_cut(b: &[u8], max: usize) -> String {
    if b.len() <= max {
        bytes(b)
    } else {
        format!("{}… ({} bytes)", bytes(&b[..max]), b.len())
    }
}

/// A size in bytes for a person: `512 B`, `4.0 KiB`, `1.5 MiB`, `2.25 GiB`.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit >= 2 {
        format!("{v:.2} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A count with thousands separators: `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut s = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            s.push(',');
        }
        s.push(d);
    }
    s
}

/// A count and its noun, singular for one: `1 key`, `2 keys`, `1,000 entries`.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A part of a whole as a percentage: `42%`, `0.3%`.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    let p = part as f64 * 100.0 / whole as f64;
    if p > 0.0 && p < 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// An I/O error as a person reads it.
pub fn io_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::IsADirectory => "is a directory".into(),
        io::ErrorKind::StorageFull => "no space left on the device".into(),
        _ => e.to_string(),
    }
}

/// Why a file the command writes (not a database: `map --out`) cannot be written at `path`,
/// blaming what is wrong: a missing directory, a directory where the file should go, or the
/// operating system's reason.
pub fn output_error(path: &Path, e: &io::Error) -> String {
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty());
    if path.is_dir() {
        format!("{}: is a directory; give a file name", path.display())
    } else if let Some(dir) = parent.filter(|d| !d.is_dir()) {
        if dir.exists() {
            format!("{}: not a directory", dir.display())
        } else {
            format!("{}: no such directory", dir.display())
        }
    } else {
        format!("{}: {}", path.display(), io_error(e))
    }
}

/// A folio error as a person reads it.
pub fn error(e: &folio::Error) -> String {
    match e {
        folio::Error::Io(io) => io_error(io),
        e => e.to_string(),
    }
}

/// Turns a folio error about the file at `path` into a failure that names the file (once: the
/// library's I/O errors about opening a file name it already).
pub fn at(path: &Path) -> impl Fn(folio::Error) -> Failure + '_ {
    move |e| {
        let message = error(&e);
        let name = path.display().to_string();
        if message.starts_with(&format!("{name}: ")) {
            Failure::new(message)
        } else {
            Failure::new(format!("{name}: {message}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_shows_text_as_text_and_escapes_the_rest() {
        assert_eq!(bytes(b"/registry/pods/a"), "/registry/pods/a");
        assert_eq!(bytes("héllo wörld".as_bytes()), "héllo wörld");
        assert_eq!(bytes(b"a\tb\nc\\d"), "a\\tb\\nc\\\\d");
        assert_eq!(bytes(b"\x00\x1b[31m\xff"), "\\x00\\x1b[31m\\xff");
        assert_eq!(bytes("a\u{202e}b".as_bytes()), "a\\u{202e}b");
        assert_eq!(bytes("\u{85}".as_bytes()), "\\u{0085}");
    }

    #[test]
    fn sizes_and_counts_read_as_a_person_writes_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(4096), "4.0 KiB");
        assert_eq!(size(3 << 20), "3.0 MiB");
        assert_eq!(size(5 << 29), "2.50 GiB");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(percent(1, 3), "33%");
        assert_eq!(percent(1, 1000), "0.1%");
        assert_eq!(counted(1, "key", "keys"), "1 key");
        assert_eq!(counted(0, "key", "keys"), "0 keys");
        assert_eq!(counted(1_000, "entry", "entries"), "1,000 entries");
    }
}

//! The packed form of a key's history: its generations as varints in one byte string, so a key
//! costs one small allocation for its history however many revisions it holds.
//!
//! ```text
//! generation*                       oldest first; the last one may be empty
//! generation := n << 1 | same       n = the number of revisions (0 only for the last one);
//!                                   same = 1 when the key was created at the first
//!                                   revision's main revision
//!               (when n > 0:)
//!               version             of the newest revision
//!               created.main        (only when same = 0; `created.sub` is always 0)
//!               first.main first.sub
//!               (main - previous main, sub) for each further revision
//! ```
//! Every number is an unsigned LEB128 varint of the `u64` the `i64` wraps to, and differences
//! wrap, so any history round-trips exactly (a difference is small in every real one: one or two
//! bytes). The index packs what it was given, so a malformed packed string is a bug and panics;
//! the one packed string that comes from disk, a history of the persisted index (`persist.rs`),
//! passes [`check`] before the index takes it.

use crate::mvcc::key_index::Generation;
use crate::mvcc::revision::Revision;

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads packed varints in order.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// How many bytes have been read.
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn u64(&mut self) -> u64 {
        let mut n = 0u64;
        let mut shift = 0;
        loop {
            let b = self.bytes[self.pos];
            self.pos += 1;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return n;
            }
            shift += 7;
        }
    }

    fn i64(&mut self) -> i64 {
        self.u64() as i64
    }

    /// The next generation's header, leaving the reader at its revisions.
    pub(super) fn header(&mut self) -> Header {
        let tag = self.u64();
        let len = (tag >> 1) as usize;
        if len == 0 {
            return Header {
                len,
                version: 0,
                created: None,
            };
        }
        let version = self.i64();
        let created = if tag & 1 == 1 { None } else { Some(self.i64()) };
        Header {
            len,
            version,
            created,
        }
    }

    /// The next revision of a generation, after `previous` (None for its first).
    pub(super) fn revision(&mut self, previous: Option<Revision>) -> Revision {
        let main = self.i64();
        let sub = self.i64();
        Revision {
            main: previous.map_or(main, |p| p.main.wrapping_add(main)),
            sub,
        }
    }
}

/// A generation's header: how many revisions follow, and what they share.
pub(super) struct Header {
    pub len: usize,
    pub version: i64,
    /// The main revision that created the key, `None` when it is the generation's first
    /// revision's.
    pub created: Option<i64>,
}

/// Appends the packed form of `generations` to `out`.
pub(super) fn encode(generations: &[Generation], out: &mut Vec<u8>) {
    for g in generations {
        debug_assert!(
            !g.revs.is_empty() || *g == Generation::default(),
            "an empty generation is blank"
        );
        debug_assert_eq!(g.created.sub, 0, "a key is created at a main revision");
        encode_generation(out, g.version, g.created.main, &g.revs);
    }
}

/// Appends one generation: `revs` (rising; none for the empty last generation), the version of
/// the newest and the main revision that created the key.
pub(super) fn encode_generation(out: &mut Vec<u8>, version: i64, created: i64, revs: &[Revision]) {
    let Some(first) = revs.first() else {
        put_varint(out, 0);
        return;
    };
    put_header(out, revs.len(), version, created, first.main);
    let mut previous: Option<Revision> = None;
    for &r in revs {
        put_revision(out, previous, r);
        previous = Some(r);
    }
}

/// Appends the header of a generation of `len` revisions (at least one), the first at main
/// revision `first`.
pub(super) fn put_header(out: &mut Vec<u8>, len: usize, version: i64, created: i64, first: i64) {
    debug_assert!(len > 0, "an empty generation has no header but its length");
    let same = created == first;
    put_varint(out, ((len as u64) << 1) | u64::from(same));
    put_varint(out, version as u64);
    if !same {
        put_varint(out, created as u64);
    }
}

/// Appends revision `r` of a generation, after `previous` (None for its first).
pub(super) fn put_revision(out: &mut Vec<u8>, previous: Option<Revision>, r: Revision) {
    let main = previous.map_or(r.main, |p| r.main.wrapping_sub(p.main));
    put_varint(out, main as u64);
    put_varint(out, r.sub as u64);
}

/// The generations packed in `bytes`.
pub(super) fn decode(bytes: &[u8]) -> Vec<Generation> {
    let mut r = Reader::new(bytes);
    let mut generations = Vec::with_capacity(2);
    while !r.is_empty() {
        let h = r.header();
        let mut revs = Vec::with_capacity(h.len);
        let mut previous = None;
        for _ in 0..h.len {
            let rev = r.revision(previous);
            revs.push(rev);
            previous = Some(rev);
        }
        generations.push(Generation {
            version: h.version,
            created: Revision {
                main: h.created.or(revs.first().map(|r| r.main)).unwrap_or(0),
                sub: 0,
            },
            revs,
        });
    }
    generations
}

/// How many revisions the packed history `bytes` holds.
pub(super) fn count(bytes: &[u8]) -> u64 {
    let mut r = Reader::new(bytes);
    let mut n = 0u64;
    while !r.is_empty() {
        let h = r.header();
        let mut previous = None;
        for _ in 0..h.len {
            previous = Some(r.revision(previous));
        }
        n += h.len as u64;
    }
    n
}

/// The varint at the start of `bytes` and its length, if it is one that fits a `u64`.
#[deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub(super) fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    // Most numbers of a history are one byte (differences, sub revisions, short lengths).
    if let Some(&b) = bytes.first()
        && b < 0x80
    {
        return Some((u64::from(b), 1));
    }
    let mut n = 0u64;
    let mut shift = 0u32;
    for (len, &b) in (1..=10).zip(bytes) {
        if len == 10 && b > 1 {
            return None;
        }
        n |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b < 0x80 {
            return Some((n, len));
        }
        shift = shift.wrapping_add(7); // at most 63: ten bytes at most
    }
    None
}

/// Checks that `bytes`, read from disk, is a history [`decode`] and [`Reader`] can walk without
/// panicking and that the index may hold: canonical, every generation but the last non-empty,
/// revisions rising (main revisions from 1 up to `revision_max`, sub revisions from 0). Returns
/// how many revisions it holds, or what is wrong.
#[deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
pub(super) fn check(bytes: &[u8], revision_max: i64) -> Result<u64, &'static str> {
    struct Checked<'a> {
        bytes: &'a [u8],
        at: usize,
    }
    impl Checked<'_> {
        fn next(&mut self) -> Result<u64, &'static str> {
            let rest = self.bytes.get(self.at..).unwrap_or_default();
            let (n, len) = read_varint(rest).ok_or("a malformed number")?;
            self.at = self.at.checked_add(len).ok_or("a malformed number")?;
            Ok(n)
        }
    }
    let mut r = Checked { bytes, at: 0 };
    let mut total = 0u64;
    let mut previous: Option<Revision> = None;
    let mut ended_empty = false;
    while r.at < bytes.len() {
        if ended_empty {
            return Err("a generation after the empty one");
        }
        let tag = r.next()?;
        let len = tag >> 1;
        if len == 0 {
            if tag != 0 {
                return Err("an empty generation with a creation flag");
            }
            ended_empty = true;
            continue;
        }
        if len > bytes.len() as u64 {
            return Err("more revisions than bytes");
        }
        let _version = r.next()?;
        let created = if tag & 1 == 1 {
            None
        } else {
            Some(r.next()? as i64)
        };
        for i in 0..len {
            let (main, sub) = (r.next()? as i64, r.next()? as i64);
            let main = match previous {
                Some(p) if i > 0 => p.main.checked_add(main).ok_or("a revision overflows")?,
                _ => main,
            };
            let rev = Revision { main, sub };
            if i == 0 && created == Some(main) {
                return Err("a creation revision written out that equals the first");
            }
            if created.is_some_and(|c| c < 0 || c > main) {
                return Err("a creation revision out of order");
            }
            if main <= 0 || sub < 0 || main > revision_max {
                return Err("a revision out of bounds");
            }
            if previous.is_some_and(|p| p >= rev) {
                return Err("revisions that do not rise");
            }
            previous = Some(rev);
        }
        total = total.checked_add(len).ok_or("too many revisions")?;
    }
    if total == 0 && !ended_empty {
        return Err("no generation");
    }
    Ok(total)
}

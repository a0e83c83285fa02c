//! `folio map`: a picture of the file, one cell per run of pages, coloured by what the pages hold,
//! in the terminal and as SVG.
//!
//! When a cell covers many pages, the terminal shows the live kind most of its live pages have, in
//! lowercase when the cell also holds free or unused pages, so that live pages scattered through a
//! fragmented file stay visible. The SVG draws such a cell as a bar stacked from every kind it
//! holds, in proportion.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;

use folio::{PageMap, PageUse};

use crate::show::{self, at, count, counted, percent, size};
use crate::{CliResult, ColorChoice, Failure, MapArgs, open};

/// How a use is drawn: glyph, ANSI background and foreground for a cell of that use, ANSI
/// foreground for that use's glyph on another colour, SVG fill.
struct Style {
    glyph: char,
    ansi: &'static str,
    ansi_fg: &'static str,
    fill: &'static str,
}

fn style(u: PageUse) -> Style {
    let (glyph, ansi, ansi_fg, fill) = match u {
        PageUse::Meta => ('M', "45;97", "95", "#8e44ad"),
        PageUse::Branch => ('B', "44;97", "94", "#2c5aa0"),
        PageUse::Leaf => ('L', "42;30", "92", "#4caf50"),
        PageUse::Overflow => ('O', "46;30", "96", "#26a6a6"),
        PageUse::Freelist => ('F', "43;30", "93", "#e0b000"),
        PageUse::Free => ('.', "41;97", "91", "#e05545"),
        PageUse::Unused => ('_', "100;97", "90", "#c8c8c8"),
        PageUse::Unaccounted => ('?', "47;30", "97", "#000000"),
    };
    Style {
        glyph,
        ansi,
        ansi_fg,
        fill,
    }
}

/// One cell: how many of its pages have each use, in the order of [`PageUse::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cell {
    pages: [u64; PageUse::ALL.len()],
}

impl Cell {
    fn of(u: PageUse, n: u64) -> Cell {
        let mut pages = [0; PageUse::ALL.len()];
        pages[index(u)] = n;
        Cell { pages }
    }

    /// The uses present, with their page counts, in the order of [`PageUse::ALL`].
    fn uses(&self) -> impl Iterator<Item = (PageUse, u64)> + Clone + '_ {
        PageUse::ALL
            .into_iter()
            .zip(self.pages)
            .filter(|&(_, n)| n > 0)
    }

    /// The most common live use (the first on a tie), or the most common other use.
    fn most(&self, live: bool) -> Option<PageUse> {
        self.uses()
            .filter(|(u, _)| u.is_live() == live)
            .fold(None, |best: Option<(PageUse, u64)>, (u, n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((u, n)),
            })
            .map(|(u, _)| u)
    }

    /// The one use of every page, when there is one.
    fn only(&self) -> Option<PageUse> {
        let mut uses = self.uses();
        match (uses.next(), uses.next()) {
            (Some((u, _)), None) => Some(u),
            _ => None,
        }
    }

    /// The glyph and ANSI colours the terminal shows.
    fn terminal(&self) -> (char, String) {
        match (self.most(true), self.most(false)) {
            (Some(live), None) => (style(live).glyph, style(live).ansi.to_string()),
            (Some(live), Some(hole)) => {
                let background = style(hole).ansi.split(';').next().unwrap_or_default();
                (
                    style(live).glyph.to_ascii_lowercase(),
                    format!("{background};{}", style(live).ansi_fg),
                )
            }
            (None, Some(hole)) => (style(hole).glyph, style(hole).ansi.to_string()),
            (None, None) => unreachable!("a cell covers at least one page"),
        }
    }
}

fn index(u: PageUse) -> usize {
    PageUse::ALL
        .iter()
        .position(|&v| v == u)
        .expect("ALL lists every use")
}

/// The picture: each cell covers `pages_per_cell` pages (the last one may cover fewer).
struct Cells {
    pages_per_cell: u64,
    cells: Vec<Cell>,
}

fn cells(map: &PageMap, pages_per_cell: u64) -> Cells {
    let total = map.file_pages();
    let n = total.div_ceil(pages_per_cell);
    let mut cells = Vec::with_capacity(n as usize);
    let mut runs = map.runs.iter().peekable();
    for i in 0..n {
        let (lo, hi) = (i * pages_per_cell, ((i + 1) * pages_per_cell).min(total));
        let mut cell = Cell {
            pages: [0; PageUse::ALL.len()],
        };
        while let Some(r) = runs.peek() {
            cell.pages[index(r.page_use)] += r.end().min(hi).saturating_sub(r.start.max(lo));
            if r.end() > hi {
                break;
            }
            runs.next();
        }
        cells.push(cell);
    }
    Cells {
        pages_per_cell,
        cells,
    }
}

pub fn run(args: &MapArgs, out: &mut dyn Write) -> CliResult {
    let path = args.db.as_path();
    let db = open::db(path)?;
    if let Some(svg_path) = &args.out {
        check_output(svg_path)?;
    }
    let map = db.page_map().map_err(at(path))?;
    drop(db);
    let pages_per_cell = args
        .pages_per_cell
        .unwrap_or_else(|| map.file_pages().div_ceil(args.width * args.height).max(1));
    let picture = cells(&map, pages_per_cell);
    let color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    write!(out, "{}", terminal(path, &map, &picture, args.width, color))?;
    if let Some(svg_path) = &args.out {
        std::fs::write(svg_path, svg(path, &map, &picture, args.width)).map_err(|e| {
            Failure::new(format!(
                "cannot write the picture: {}",
                show::output_error(svg_path, &e)
            ))
        })?;
        writeln!(out, "wrote {}", svg_path.display())?;
    }
    Ok(())
}

/// Fails before any drawing when the picture could not be written to `svg_path`: a directory
/// there, or no directory to put it in.
fn check_output(svg_path: &Path) -> CliResult {
    let parent = svg_path.parent().filter(|d| !d.as_os_str().is_empty());
    if svg_path.is_dir() || parent.is_some_and(|d| !d.is_dir()) {
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        return Err(Failure::new(format!(
            "cannot write the picture: {}",
            show::output_error(svg_path, &e)
        )));
    }
    Ok(())
}

fn title(path: &Path, map: &PageMap, pages_per_cell: u64) -> String {
    let cell = if pages_per_cell == 1 {
        "one cell per page".to_string()
    } else {
        format!(
            "one cell per {} pages ({})",
            count(pages_per_cell),
            size(pages_per_cell * map.page_size as u64)
        )
    };
    format!(
        "{}: {}, {} pages of {}, commit {}; {cell}",
        path.display(),
        size(map.file_bytes),
        count(map.file_pages()),
        size(map.page_size as u64),
        count(map.txid)
    )
}

fn summary(map: &PageMap) -> String {
    let total = map.file_pages();
    let live: u64 = map
        .runs
        .iter()
        .filter(|r| r.page_use.is_live())
        .map(|r| r.len)
        .sum();
    let free = map.pages(PageUse::Free);
    let unused = map.pages(PageUse::Unused);
    let holes = map.holes();
    format!(
        "live {} ({}) · free {} ({}) · unused {} ({}) · {}",
        counted(live, "page", "pages"),
        percent(live, total),
        count(free),
        percent(free, total),
        count(unused),
        percent(unused, total),
        counted(holes, "hole", "holes")
    )
}

fn terminal(path: &Path, map: &PageMap, picture: &Cells, width: u64, color: bool) -> String {
    // Cells drawn alike are one coloured stretch.
    let paint = |cells: &[Cell]| {
        let glyphs: String = cells.iter().map(|c| c.terminal().0).collect();
        if color {
            format!("\x1b[{}m{glyphs}\x1b[0m", cells[0].terminal().1)
        } else {
            glyphs
        }
    };
    let mut s = title(path, map, picture.pages_per_cell);
    s.push('\n');
    let label_width = count(map.file_pages()).len();
    for (row, cells) in picture.cells.chunks(width as usize).enumerate() {
        let first_page = row as u64 * width * picture.pages_per_cell;
        let _ = write!(s, "{:>label_width$} ", count(first_page));
        for run in cells.chunk_by(|a, b| a.terminal().1 == b.terminal().1) {
            s.push_str(&paint(run));
        }
        s.push('\n');
    }
    s.push_str("legend:");
    for u in PageUse::ALL {
        let _ = write!(s, "  {} {}", paint(&[Cell::of(u, 1)]), u.name());
    }
    if picture.pages_per_cell > 1 {
        let mut mixed = Cell::of(PageUse::Leaf, 1);
        mixed.pages[index(PageUse::Free)] = 1;
        let _ = write!(
            s,
            "  {} leaves among free pages (lowercase: mixed)",
            paint(&[mixed])
        );
    }
    s.push('\n');
    s.push_str(&summary(map));
    s.push('\n');
    if !map.problems.is_empty() {
        let _ = writeln!(
            s,
            "the checker found {} in this file: run `folio check`",
            counted(map.problems.len() as u64, "problem", "problems")
        );
    }
    s
}

/// SVG text needs `&`, `<` and `>` escaped.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG paths, one per colour, as they are drawn up.
#[derive(Default)]
struct Paths(Vec<(PageUse, String)>);

impl Paths {
    fn rect(&mut self, u: PageUse, x: u64, y: u64, w: u64, h: u64) {
        let i = match self.0.iter().position(|(p, _)| *p == u) {
            Some(i) => i,
            None => {
                self.0.push((u, String::new()));
                self.0.len() - 1
            }
        };
        let _ = write!(self.0[i].1, "M{x} {y}h{w}v{h}h-{w}z");
    }
}

fn svg(path: &Path, map: &PageMap, picture: &Cells, width: u64) -> String {
    const CELL: u64 = 10;
    const GAP: u64 = 1;
    const MARGIN: u64 = 12;
    const LINE: u64 = 20;
    let pitch = CELL + GAP;
    let rows = picture.cells.len().div_ceil(width as usize) as u64;
    let grid_top = MARGIN + LINE;
    let legend_top = grid_top + rows * pitch + MARGIN;
    let svg_width = (2 * MARGIN + width * pitch).max(900);
    let svg_height = legend_top + 2 * LINE + MARGIN;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{svg_width}" height="{svg_height}" viewBox="0 0 {svg_width} {svg_height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="{MARGIN}" y="{}">{}</text>"#,
        MARGIN + 10,
        xml(&title(path, map, picture.pages_per_cell))
    );
    // A run of cells whose pages all have one use is one bar; any other cell is stacked from the
    // bottom with each use it holds, as high as its share of the cell's pages.
    let mut paths = Paths::default();
    for (row, cells) in picture.cells.chunks(width as usize).enumerate() {
        let y = grid_top + row as u64 * pitch;
        let mut col = 0;
        for run in cells.chunk_by(|a, b| a.only().is_some() && a.only() == b.only()) {
            let x = MARGIN + col * pitch;
            let cell = run[0];
            if let Some(u) = cell.only() {
                paths.rect(u, x, y, run.len() as u64 * pitch - GAP, CELL);
            } else {
                let total: u64 = cell.pages.iter().sum();
                let (mut below, mut drawn) = (0, 0);
                for (u, n) in cell.uses() {
                    below += n;
                    let top = (CELL as f64 * below as f64 / total as f64).round() as u64;
                    if top > drawn {
                        paths.rect(u, x, y + CELL - top, CELL, top - drawn);
                        drawn = top;
                    }
                }
            }
            col += run.len() as u64;
        }
    }
    for (u, d) in &paths.0 {
        let _ = writeln!(
            s,
            r#"<path fill="{}" d="{d}"><title>{}</title></path>"#,
            style(*u).fill,
            u.name()
        );
    }
    let mut x = MARGIN;
    for u in PageUse::ALL {
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{legend_top}" width="{CELL}" height="{CELL}" fill="{}" stroke="#999999" stroke-width="0.5"/><text x="{}" y="{}">{}</text>"##,
            style(u).fill,
            x + CELL + 4,
            legend_top + CELL,
            u.name()
        );
        x += CELL + 4 + 7 * u.name().len() as u64 + 14;
    }
    if picture.pages_per_cell > 1 {
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{legend_top}" width="{CELL}" height="{CELL}" fill="{}" stroke="#999999" stroke-width="0.5"/><rect x="{x}" y="{}" width="{CELL}" height="{}" fill="{}"/><text x="{}" y="{}">a cell of several kinds: stacked in proportion</text>"##,
            style(PageUse::Free).fill,
            legend_top + CELL / 2,
            CELL / 2,
            style(PageUse::Leaf).fill,
            x + CELL + 4,
            legend_top + CELL,
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{MARGIN}" y="{}">{}</text>"#,
        legend_top + LINE + 10,
        xml(&summary(map))
    );
    s.push_str("</svg>\n");
    s
}

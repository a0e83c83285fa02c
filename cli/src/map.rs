//! `folio map`: a picture of the file, one cell per run of pages, coloured by what the pages hold,
//! in the terminal and as SVG.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;

use folio::{PageMap, PageUse};

use crate::show::{at, count, percent, size};
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

/// One cell: the most common live use among its pages and how many pages are live, and the most
/// common of the other uses (free, unused, unaccounted) and how many pages those are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cell {
    live: Option<(PageUse, u64)>,
    hole: Option<(PageUse, u64)>,
}

impl Cell {
    /// The live part of a cell that also holds free or unused pages, as a fraction of the cell.
    fn live_fraction(&self) -> f64 {
        match (self.live, self.hole) {
            (Some((_, live)), Some((_, hole))) => live as f64 / (live + hole) as f64,
            (Some(_), None) => 1.0,
            _ => 0.0,
        }
    }
}

/// The picture: each cell covers `pages_per_cell` pages (the last one may cover fewer). A cell
/// shows the live use most of its live pages have; one that also holds free or unused pages is
/// drawn as mixed, so that scattered live pages stay visible in a large file.
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
        let mut pages = [0u64; PageUse::ALL.len()];
        while let Some(r) = runs.peek() {
            let overlap = r.end().min(hi).saturating_sub(r.start.max(lo));
            let k = PageUse::ALL.iter().position(|&u| u == r.page_use);
            pages[k.expect("ALL lists every use")] += overlap;
            if r.end() > hi {
                break;
            }
            runs.next();
        }
        let part = |live: bool| {
            let uses = PageUse::ALL
                .iter()
                .zip(pages)
                .filter(|(u, n)| u.is_live() == live && *n > 0);
            let sum: u64 = uses.clone().map(|(_, n)| n).sum();
            let most = uses.fold(None, |best: Option<(PageUse, u64)>, (&u, n)| match best {
                Some((_, m)) if m >= n => best,
                _ => Some((u, n)),
            });
            most.map(|(u, _)| (u, sum))
        };
        cells.push(Cell {
            live: part(true),
            hole: part(false),
        });
    }
    Cells {
        pages_per_cell,
        cells,
    }
}

pub fn run(args: &MapArgs, out: &mut dyn Write) -> CliResult {
    let path = args.db.as_path();
    let db = open::db(path)?;
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
                "{}: cannot write the picture: {}",
                svg_path.display(),
                crate::show::io_error(&e)
            ))
        })?;
        writeln!(out, "wrote {}", svg_path.display())?;
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
        "live {} pages ({}) · free {} ({}) · unused {} ({}) · {} hole{}",
        count(live),
        percent(live, total),
        count(free),
        percent(free, total),
        count(unused),
        percent(unused, total),
        count(holes),
        if holes == 1 { "" } else { "s" }
    )
}

fn terminal(path: &Path, map: &PageMap, picture: &Cells, width: u64, color: bool) -> String {
    let glyph = |c: &Cell| match (c.live, c.hole) {
        (Some((u, _)), None) => style(u).glyph,
        (Some((u, _)), Some(_)) => style(u).glyph.to_ascii_lowercase(),
        (None, Some((u, _))) => style(u).glyph,
        (None, None) => unreachable!("a cell covers at least one page"),
    };
    // The colours of a cell: its use's, or, when mixed, the live use's glyph on the hole's colour.
    let ansi = |c: &Cell| match (c.live, c.hole) {
        (Some((live, _)), Some((hole, _))) => {
            format!(
                "{};{}",
                style(hole).ansi.split(';').next().unwrap_or(""),
                style(live).ansi_fg
            )
        }
        (Some((u, _)), None) | (None, Some((u, _))) => style(u).ansi.to_string(),
        (None, None) => unreachable!("a cell covers at least one page"),
    };
    let paint = |cells: &[Cell]| {
        let glyphs: String = cells.iter().map(glyph).collect();
        if color {
            format!("\x1b[{}m{glyphs}\x1b[0m", ansi(&cells[0]))
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
        for run in cells.chunk_by(|a, b| ansi(a) == ansi(b)) {
            s.push_str(&paint(run));
        }
        s.push('\n');
    }
    s.push_str("legend:");
    for u in PageUse::ALL {
        let cell = if u.is_live() {
            Cell {
                live: Some((u, 1)),
                hole: None,
            }
        } else {
            Cell {
                live: None,
                hole: Some((u, 1)),
            }
        };
        let _ = write!(s, "  {} {}", paint(&[cell]), u.name());
    }
    if picture.pages_per_cell > 1 {
        let mixed = Cell {
            live: Some((PageUse::Leaf, 1)),
            hole: Some((PageUse::Free, 1)),
        };
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
            "the checker found {} problem(s) in this file: run `folio check`",
            map.problems.len()
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
    // One path per colour: first each row's runs of cells by their use (a mixed cell by its
    // hole's), then, over a mixed cell, a bar of its live use's colour as high as its pages are
    // live.
    let mut background: Vec<(PageUse, String)> = Vec::new();
    let mut bars: Vec<(PageUse, String)> = Vec::new();
    let path_of = |paths: &mut Vec<(PageUse, String)>, u: PageUse| -> usize {
        match paths.iter().position(|(p, _)| *p == u) {
            Some(i) => i,
            None => {
                paths.push((u, String::new()));
                paths.len() - 1
            }
        }
    };
    let back_use = |c: &Cell| match (c.live, c.hole) {
        (Some((u, _)), None) | (_, Some((u, _))) => u,
        (None, None) => unreachable!("a cell covers at least one page"),
    };
    for (row, cells) in picture.cells.chunks(width as usize).enumerate() {
        let y = grid_top + row as u64 * pitch;
        let mut col = 0;
        for run in cells.chunk_by(|a, b| back_use(a) == back_use(b)) {
            let i = path_of(&mut background, back_use(&run[0]));
            let _ = write!(
                background[i].1,
                "M{} {y}h{}v{CELL}h-{}z",
                MARGIN + col * pitch,
                run.len() as u64 * pitch - GAP,
                run.len() as u64 * pitch - GAP
            );
            for (k, c) in run.iter().enumerate() {
                if let (Some((live, _)), Some(_)) = (c.live, c.hole) {
                    let high = (CELL as f64 * c.live_fraction()).round() as u64;
                    let high = high.clamp(1, CELL - 1);
                    let i = path_of(&mut bars, live);
                    let _ = write!(
                        bars[i].1,
                        "M{} {}h{CELL}v{high}h-{CELL}z",
                        MARGIN + (col + k as u64) * pitch,
                        y + CELL - high
                    );
                }
            }
            col += run.len() as u64;
        }
    }
    for (u, d) in background.iter().chain(&bars) {
        let _ = writeln!(
            s,
            r#"<path fill="{}" d="{d}"><title>{}</title></path>"#,
            style(*u).fill,
            u.name()
        );
    }
    let mut x = MARGIN;
    for u in PageUse::ALL {
        let fill = style(u).fill;
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{legend_top}" width="{CELL}" height="{CELL}" fill="{fill}" stroke="#999999" stroke-width="0.5"/><text x="{}" y="{}">{}</text>"##,
            x + CELL + 4,
            legend_top + CELL,
            u.name()
        );
        x += CELL + 4 + 7 * u.name().len() as u64 + 14;
    }
    if picture.pages_per_cell > 1 {
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{legend_top}" width="{CELL}" height="{CELL}" fill="{}" stroke="#999999" stroke-width="0.5"/><rect x="{x}" y="{}" width="{CELL}" height="{}" fill="{}"/><text x="{}" y="{}">live among free: filled as far as live</text>"##,
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

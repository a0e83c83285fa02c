//! `folio map`: a picture of the file, one cell per run of pages, coloured by what the pages hold,
//! in the terminal and as SVG.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::path::Path;

use folio::{PageMap, PageUse};

use crate::show::{at, count, percent, size};
use crate::{CliResult, ColorChoice, Failure, MapArgs, open};

/// How a use is drawn: glyph, ANSI colours (background;foreground), SVG fill.
fn style(u: PageUse) -> (char, &'static str, &'static str) {
    match u {
        PageUse::Meta => ('M', "45;97", "#8e44ad"),
        PageUse::Branch => ('B', "44;97", "#2c5aa0"),
        PageUse::Leaf => ('L', "42;30", "#4caf50"),
        PageUse::Overflow => ('O', "46;30", "#26a6a6"),
        PageUse::Freelist => ('F', "43;30", "#e0b000"),
        PageUse::Free => ('.', "41;97", "#e05545"),
        PageUse::Unused => ('_', "100;97", "#c8c8c8"),
        PageUse::Unaccounted => ('?', "47;30", "#000000"),
    }
}

/// The picture: each cell covers `pages_per_cell` pages (the last one may cover fewer) and shows
/// the use of most of them.
struct Cells {
    pages_per_cell: u64,
    cells: Vec<PageUse>,
}

fn cells(map: &PageMap, max_cells: u64) -> Cells {
    let total = map.file_pages();
    let pages_per_cell = total.div_ceil(max_cells).max(1);
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
        let most =
            (0..pages.len()).fold(0, |best, k| if pages[k] > pages[best] { k } else { best });
        cells.push(PageUse::ALL[most]);
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
    let picture = cells(&map, args.width * args.height);
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
    // A run of same-use cells is one coloured stretch.
    let paint = |u: PageUse, n: usize| {
        let (glyph, ansi, _) = style(u);
        let glyphs = glyph.to_string().repeat(n);
        if color {
            format!("\x1b[{ansi}m{glyphs}\x1b[0m")
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
        for run in cells.chunk_by(|a, b| a == b) {
            s.push_str(&paint(run[0], run.len()));
        }
        s.push('\n');
    }
    s.push_str("legend:");
    for u in PageUse::ALL {
        let _ = write!(s, "  {} {}", paint(u, 1), u.name());
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
    let svg_width = (2 * MARGIN + width * pitch).max(560);
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
    // One rectangle per run of same-coloured cells in a row.
    for (row, cells) in picture.cells.chunks(width as usize).enumerate() {
        let y = grid_top + row as u64 * pitch;
        let mut col = 0;
        for run in cells.chunk_by(|a, b| a == b) {
            let (_, _, fill) = style(run[0]);
            let _ = writeln!(
                s,
                r#"<rect x="{}" y="{y}" width="{}" height="{CELL}" fill="{fill}"><title>{}</title></rect>"#,
                MARGIN + col * pitch,
                run.len() as u64 * pitch - GAP,
                run[0].name()
            );
            col += run.len() as u64;
        }
    }
    let mut x = MARGIN;
    for u in PageUse::ALL {
        let (_, _, fill) = style(u);
        let _ = writeln!(
            s,
            r##"<rect x="{x}" y="{legend_top}" width="{CELL}" height="{CELL}" fill="{fill}" stroke="#999999" stroke-width="0.5"/><text x="{}" y="{}">{}</text>"##,
            x + CELL + 4,
            legend_top + CELL,
            u.name()
        );
        x += CELL + 4 + 7 * u.name().len() as u64 + 14;
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

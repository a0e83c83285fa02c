//! `folio map`: the picture of the file in the terminal and as SVG.

mod common;

use common::{folio, fragmented_store, open_db, temp_db};
use folio::PageUse;

#[test]
fn map_draws_one_glyph_per_page_with_a_legend_and_counts() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 300);
    let map = open_db(&path).page_map().unwrap();
    assert!(
        map.file_pages() <= 64 * 24,
        "small enough for one page per cell"
    );
    let out = folio(["map".as_ref(), path.as_os_str()]);
    let text = out.ok();
    assert!(text.contains("one cell per page"), "{text}");
    let cells: String = text
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("legend:"))
        .map(|l| {
            l.trim_start()
                .split_once(' ')
                .map_or("", |(_, cells)| cells)
        })
        .collect();
    assert_eq!(cells.len() as u64, map.file_pages(), "{text}");
    let glyphs = [
        ('M', PageUse::Meta),
        ('B', PageUse::Branch),
        ('L', PageUse::Leaf),
        ('F', PageUse::Freelist),
        ('.', PageUse::Free),
        ('_', PageUse::Unused),
    ];
    for (glyph, page_use) in glyphs {
        let drawn = cells.chars().filter(|&c| c == glyph).count() as u64;
        assert_eq!(
            drawn,
            map.pages(page_use),
            "{page_use} pages drawn as {glyph:?}"
        );
    }
    assert!(cells.starts_with("MM"));
    assert!(text.contains("legend:  M meta  B branch  L leaf  O overflow  F freelist  . free"));
    assert!(
        text.contains(&format!("· {} holes", map.holes())),
        "the summary counts the holes: {text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colours when stdout is not a terminal"
    );
}

#[test]
fn map_uses_ansi_colours_when_asked() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 100);
    let out = folio([
        "map".as_ref(),
        path.as_os_str(),
        "--color".as_ref(),
        "always".as_ref(),
    ]);
    let text = out.ok();
    assert!(
        text.contains("\x1b[45;97mMM\x1b[0m"),
        "metas in magenta: {text:?}"
    );
    assert!(text.contains("\x1b[41;97m."), "free pages in red: {text:?}");
}

#[test]
fn map_puts_many_pages_in_a_cell_for_a_large_file() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 300);
    let pages = open_db(&path).page_map().unwrap().file_pages();
    let out = folio([
        "map".as_ref(),
        path.as_os_str(),
        "--width".as_ref(),
        "8".as_ref(),
        "--height".as_ref(),
        "2".as_ref(),
    ]);
    let text = out.ok();
    let per_cell = pages.div_ceil(16);
    assert!(
        text.contains(&format!("one cell per {per_cell} pages")),
        "{text}"
    );
    let rows: Vec<&str> = text.lines().skip(1).take(2).collect();
    assert!(
        rows.iter()
            .all(|r| r.trim_start().split_once(' ').unwrap().1.len() <= 8),
        "{text}"
    );
}

#[test]
fn map_writes_an_svg_with_a_rectangle_per_run_and_a_legend() {
    let (dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 300);
    let svg_path = dir.path().join("map.svg");
    let out = folio([
        "map".as_ref(),
        path.as_os_str(),
        "--out".as_ref(),
        svg_path.as_os_str(),
    ]);
    assert!(out.ok().contains(&format!("wrote {}", svg_path.display())));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    for name in ["meta", "branch", "leaf", "freelist", "free"] {
        assert!(
            svg.contains(&format!("<title>{name}</title>")),
            "{name} drawn"
        );
        assert!(
            svg.contains(&format!(">{name}</text>")),
            "{name} in the legend"
        );
    }
    assert!(svg.contains("holes"));
}

#[test]
fn map_reports_an_svg_it_cannot_write() {
    let (dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 50);
    let svg_path = dir.path().join("no-such-dir").join("map.svg");
    let out = folio([
        "map".as_ref(),
        path.as_os_str(),
        "--out".as_ref(),
        svg_path.as_os_str(),
    ]);
    assert!(
        out.fails()
            .contains("cannot write the picture: no such file"),
        "{out:?}"
    );
}

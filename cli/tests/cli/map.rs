//! `folio map`: the picture of the file in the terminal and as SVG.

use crate::common::{folio, folio_on, fragmented_store, open_db, temp_db};
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
    let out = folio_on("map", &path, &["--color", "always"]);
    let text = out.ok();
    assert!(
        text.contains("\x1b[45;97mMM\x1b[0m"),
        "metas in magenta: {text:?}"
    );
    assert!(text.contains("\x1b[41;97m."), "free pages in red: {text:?}");
}

/// The glyph of each cell of `pages_per_cell` pages: the most common live use among its pages,
/// in lowercase when the cell also holds free or unused pages; else the most common other use.
fn expected_cells(map: &folio::PageMap, pages_per_cell: u64) -> String {
    let glyph = |u: PageUse| match u {
        PageUse::Meta => 'M',
        PageUse::Branch => 'B',
        PageUse::Leaf => 'L',
        PageUse::Overflow => 'O',
        PageUse::Freelist => 'F',
        PageUse::Free => '.',
        PageUse::Unused => '_',
        PageUse::Unaccounted => '?',
    };
    let uses: Vec<PageUse> = map
        .runs
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.page_use, r.len as usize))
        .collect();
    uses.chunks(pages_per_cell as usize)
        .map(|cell| {
            let most = |live: bool| {
                PageUse::ALL
                    .iter()
                    .filter(|u| u.is_live() == live)
                    .map(|&u| (u, cell.iter().filter(|&&c| c == u).count()))
                    .filter(|&(_, n)| n > 0)
                    .fold(None, |best: Option<(PageUse, usize)>, (u, n)| match best {
                        Some((_, m)) if m >= n => best,
                        _ => Some((u, n)),
                    })
            };
            match (most(true), most(false)) {
                (Some((u, _)), None) => glyph(u),
                (Some((u, _)), Some(_)) => glyph(u).to_ascii_lowercase(),
                (None, Some((u, _))) => glyph(u),
                (None, None) => unreachable!(),
            }
        })
        .collect()
}

/// The cells of a `folio map` picture, row after row.
fn drawn_cells(text: &str) -> String {
    text.lines()
        .skip(1)
        .take_while(|l| !l.starts_with("legend:"))
        .map(|l| {
            l.trim_start()
                .split_once(' ')
                .map_or("", |(_, cells)| cells)
        })
        .collect()
}

#[test]
fn map_puts_many_pages_in_a_cell_and_shows_live_pages_among_free_ones_in_lowercase() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 300);
    let map = open_db(&path).page_map().unwrap();
    let out = folio_on("map", &path, &["--width", "8", "--height", "2"]);
    let text = out.ok();
    let per_cell = map.file_pages().div_ceil(16);
    assert!(per_cell > 1);
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
    let cells = drawn_cells(text);
    assert_eq!(cells, expected_cells(&map, per_cell), "{text}");
    assert!(
        cells.chars().any(|c| c.is_ascii_lowercase()),
        "the fixture mixes: {text}"
    );
    assert!(
        text.contains("l leaves among free pages (lowercase: mixed)"),
        "{text}"
    );
}

#[test]
fn map_draws_at_the_scale_asked_for() {
    let (_dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 300);
    let map = open_db(&path).page_map().unwrap();
    let out = folio_on("map", &path, &["--pages-per-cell", "3", "--width", "10"]);
    let text = out.ok();
    assert!(text.contains("one cell per 3 pages (12.0 KiB)"), "{text}");
    let cells = drawn_cells(text);
    assert_eq!(cells, expected_cells(&map, 3), "{text}");
    let rows = text
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("legend:"))
        .count();
    assert_eq!(rows as u64, map.file_pages().div_ceil(3).div_ceil(10));
}

#[test]
fn map_writes_an_svg_with_every_kind_drawn_and_a_legend() {
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

/// `--out /missing/x.svg` blamed the file ("no such file"); the directory is what is missing.
/// The check comes before the drawing, so nothing is printed for a picture that cannot be saved.
#[test]
fn map_out_into_a_missing_directory_names_the_directory() {
    let (dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 50);
    let missing = dir.path().join("no-such-dir");
    let svg_path = missing.join("map.svg");
    let out = folio([
        "map".as_ref(),
        path.as_os_str(),
        "--out".as_ref(),
        svg_path.as_os_str(),
    ]);
    assert_eq!(
        out.fails(),
        format!(
            "folio: cannot write the picture: {}: no such directory",
            missing.display()
        )
    );
    assert_eq!(out.stdout, "", "nothing drawn");
    assert!(!missing.exists());
}

/// `map --out adir` said "is a directory, not a folio database" about the picture's path.
#[test]
fn map_out_naming_a_directory_says_so_without_calling_it_a_database() {
    let (dir, path) = temp_db("kv.folio");
    fragmented_store(&path, 50);
    let out = folio([
        "map".as_ref(),
        path.as_os_str(),
        "--out".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert_eq!(
        out.fails(),
        format!(
            "folio: cannot write the picture: {}: is a directory; give a file name",
            dir.path().display()
        )
    );
    assert!(!out.stderr.contains("database"), "{out:?}");
}

#[test]
fn map_svg_stacks_a_cell_of_several_kinds_in_proportion() {
    let (dir, path) = temp_db("kv.folio");
    // 400 pods: 300 leave no leaf beside a free page in a two-page cell (since appends fill
    // their pages).
    fragmented_store(&path, 400);
    let map = open_db(&path).page_map().unwrap();
    let uses: Vec<PageUse> = map
        .runs
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.page_use, r.len as usize))
        .collect();
    let half_leaf_half_free = uses
        .chunks(2)
        .any(|c| c.contains(&PageUse::Leaf) && c.contains(&PageUse::Free));
    assert!(
        half_leaf_half_free,
        "the fixture has a leaf beside a free page"
    );
    let svg_path = dir.path().join("map.svg");
    folio([
        "map".as_ref(),
        path.as_os_str(),
        "--pages-per-cell".as_ref(),
        "2".as_ref(),
        "--out".as_ref(),
        svg_path.as_os_str(),
    ])
    .ok();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let path_of = |fill: &str| {
        let start = svg
            .find(&format!("<path fill=\"{fill}\" d=\""))
            .expect(fill);
        svg[start..].split('"').nth(3).unwrap().to_string()
    };
    // A cell is 10 units high: a leaf in the lower half, a free page in the upper.
    assert!(path_of("#4caf50").contains("h10v5h-10z"), "{svg}");
    assert!(path_of("#e05545").contains("h10v5h-10z"), "{svg}");
    assert!(svg.contains("a cell of several kinds: stacked in proportion"));
}

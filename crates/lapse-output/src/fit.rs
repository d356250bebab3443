//! Tables that fit the terminal: each row stays one line, and when the table is wider than the
//! terminal the columns that hold free text (WHO, WHAT, DETAIL, REASON…) are shortened by display
//! width with `…`. A cell is never wrapped: a wrapped cell breaks `grep` and `cut`, and a row
//! split over lines is easy to misread as two.

use comfy_table::{ContentArrangement, Table, presets};
use unicode_width::{UnicodeWidthChar as _, UnicodeWidthStr as _};

/// A shortened column keeps at least this many columns of text: less says nothing.
const MIN_FLEX_WIDTH: usize = 12;

/// A table being built: its header, its rows as text, and the columns that may be shortened.
pub(crate) struct Grid {
    header: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
    flex: Vec<usize>,
    /// Columns left out, in this order, when the shortened table still does not fit.
    optional: Vec<usize>,
}

impl Grid {
    /// A table with a header; `flex` are the columns (by index) that may be shortened.
    pub(crate) fn new(header: &[&str], flex: &[usize]) -> Grid {
        Grid {
            header: Some(header.iter().map(|h| (*h).to_owned()).collect()),
            rows: Vec::new(),
            flex: flex.to_vec(),
            optional: Vec::new(),
        }
    }

    /// Columns that a narrow terminal goes without (first listed, first left out); `--wide`
    /// shows them.
    pub(crate) fn optional(mut self, columns: &[usize]) -> Grid {
        self.optional = columns.to_vec();
        self
    }

    /// A two-column `name value` table without a header, values shortened to fit.
    pub(crate) fn fields() -> Grid {
        Grid {
            header: None,
            rows: Vec::new(),
            flex: vec![1],
            optional: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text no wider than `width` where shortening its free-text columns allows
    /// it; `None` draws every cell whole (`--wide`, or output that is not a terminal).
    pub(crate) fn render(self, width: Option<usize>) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain(self.header.as_ref().map(Vec::len))
            .max()
            .unwrap_or(0);
        let mut caps: Vec<Option<usize>> = vec![None; columns];
        let mut hidden = vec![false; columns];
        let Some(limit) = width else {
            return self.draw(&caps, &hidden);
        };
        let optional: Vec<usize> = self
            .optional
            .iter()
            .copied()
            .filter(|&c| c < columns)
            .collect();
        let mut text = String::new();
        // Shorten the free-text columns; when that is not enough, leave out the next optional
        // column and start again with every cell whole.
        for left_out in 0..=optional.len() {
            for &c in &optional[..left_out] {
                hidden[c] = true;
            }
            caps.iter_mut().for_each(|c| *c = None);
            if let Some(fitted) = self.shorten_to(limit, &mut caps, &hidden) {
                return fitted;
            }
            text = self.draw(&caps, &hidden);
        }
        // The fixed columns alone are wider than the terminal: the line runs over, but no cell
        // is cut or wrapped.
        text
    }

    /// Shortens the free-text columns (widest first, none below [`MIN_FLEX_WIDTH`]) until the
    /// table fits `limit`; the table, or `None` when it cannot be made to fit.
    fn shorten_to(
        &self,
        limit: usize,
        caps: &mut [Option<usize>],
        hidden: &[bool],
    ) -> Option<String> {
        // The drawn width includes padding the table adds; measuring the result instead of
        // predicting it keeps this right whatever the preset's spacing is.
        for _ in 0..4 {
            let text = self.draw(caps, hidden);
            let widest = text.lines().map(str::width).max().unwrap_or(0);
            if widest <= limit {
                return Some(text);
            }
            let mut excess = widest - limit;
            let mut current: Vec<(usize, usize)> = self
                .flex
                .iter()
                .filter(|&&c| c < caps.len() && !hidden[c])
                .map(|&c| (c, caps[c].unwrap_or_else(|| self.natural(c))))
                .collect();
            let mut shrunk = false;
            while excess > 0 {
                let Some(widest_column) = current
                    .iter_mut()
                    .filter(|(_, w)| *w > MIN_FLEX_WIDTH)
                    .max_by_key(|(_, w)| *w)
                else {
                    break;
                };
                widest_column.1 -= 1;
                excess -= 1;
                shrunk = true;
            }
            for (c, w) in current {
                caps[c] = Some(w);
            }
            if !shrunk {
                return None;
            }
        }
        let text = self.draw(caps, hidden);
        (text.lines().map(str::width).max().unwrap_or(0) <= limit).then_some(text)
    }

    /// The widest cell of column `c`, header included.
    fn natural(&self, c: usize) -> usize {
        self.rows
            .iter()
            .chain(self.header.as_ref())
            .filter_map(|r| r.get(c))
            .map(|cell| cell.width())
            .max()
            .unwrap_or(0)
    }

    fn draw(&self, caps: &[Option<usize>], hidden: &[bool]) -> String {
        let mut table = Table::new();
        table
            .load_preset(presets::NOTHING)
            .force_no_tty()
            .set_content_arrangement(ContentArrangement::Disabled);
        let cut = |r: &Vec<String>| -> Vec<String> {
            r.iter()
                .enumerate()
                .filter(|(i, _)| !hidden.get(*i).copied().unwrap_or(false))
                .map(|(i, cell)| match caps.get(i).copied().flatten() {
                    Some(cap) => shorten(cell, cap),
                    None => cell.clone(),
                })
                .collect()
        };
        if let Some(h) = &self.header {
            table.set_header(cut(h));
        }
        for r in &self.rows {
            table.add_row(cut(r));
        }
        // Lines start at the first column, like `kubectl get`, and carry no trailing blanks, so
        // that `grep ^01J` and `cut` work on them.
        if let Some(first) = table.column_mut(0) {
            first.set_padding((0, 1));
        }
        table.trim_fmt()
    }
}

/// `s` in at most `max` columns of display width, ending in `…` when it was cut; wide (CJK,
/// emoji) characters count twice, so the cut never overflows the column.
pub fn shorten(s: &str, max: usize) -> String {
    if s.width() <= max {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for ch in s.chars() {
        let w = ch.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(ch);
        used += w;
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortening_counts_display_width() {
        assert_eq!(shorten("abcdef", 6), "abcdef");
        assert_eq!(shorten("abcdefg", 6), "abcde…");
        // Each of these is two columns wide: five columns hold two and the ellipsis.
        let cut = shorten("数据库数据库", 5);
        assert_eq!(cut, "数据…");
        assert!(cut.width() <= 5);
    }

    fn sample() -> Grid {
        let mut g = Grid::new(&["ID", "STATE", "WHO", "WHAT"], &[2, 3]);
        for i in 0..5 {
            g.row(vec![
                format!("01JROW{i}"),
                "active".to_owned(),
                format!("user{i}@example.com, ").repeat(6),
                format!("group lapse-01m8{i}abcdefghijkl; prod-db 数据库 ").repeat(3),
            ]);
        }
        g
    }

    #[test]
    fn rows_fit_the_width_and_stay_one_line_each() {
        for width in [80, 120, 200] {
            let out = sample().render(Some(width));
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(
                lines.len(),
                6,
                "a header and five rows, none wrapped: {out}"
            );
            for l in &lines {
                assert!(l.width() <= width, "{} > {width}: {l:?}", l.width());
            }
            for (i, l) in lines[1..].iter().enumerate() {
                assert!(l.starts_with(&format!("01JROW{i} ")), "{l}");
                assert!(l.contains("active"), "fixed columns are whole: {l}");
            }
        }
        let narrow = sample().render(Some(80));
        assert!(narrow.contains('…'), "{narrow}");
        let wide = sample().render(None);
        assert!(!wide.contains('…'), "{wide}");
        assert!(wide.lines().any(|l| l.width() > 200), "{wide}");
    }

    #[test]
    fn optional_columns_go_when_nothing_else_helps() {
        let mut g = Grid::new(&["ID", "KIND", "WHO"], &[2]).optional(&[1]);
        g.row(vec!["i".repeat(40), "k".repeat(30), "w".repeat(40)]);
        let out = g.render(Some(60));
        assert!(!out.contains("KIND") && !out.contains('k'), "{out}");
        assert!(out.contains(&"i".repeat(40)), "{out}");
        assert!(out.lines().all(|l| l.width() <= 60), "{out}");
        let mut g = Grid::new(&["ID", "KIND", "WHO"], &[2]).optional(&[1]);
        g.row(vec!["i".repeat(40), "k".repeat(30), "w".repeat(40)]);
        assert!(g.render(None).contains("KIND"));
    }

    #[test]
    fn fixed_columns_are_never_cut() {
        let mut g = Grid::new(&["ID", "DETAIL"], &[1]);
        g.row(vec!["x".repeat(90), "y".repeat(50)]);
        let out = g.render(Some(80));
        assert!(out.contains(&"x".repeat(90)), "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
    }
}

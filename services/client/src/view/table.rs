//! A small aligned-table renderer for terminals: columns padded to their widest
//! cell (up to a cap), the last column cut so no line passes the width, and
//! cells cleaned of control characters so data cannot break the layout.

/// The widest line the view prints.
pub(super) const WIDTH: usize = 120;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A column: its header, alignment and widest allowed cell.
#[derive(Debug, Clone, Copy)]
pub(super) struct Column {
    pub(super) header: &'static str,
    pub(super) align: Align,
    pub(super) max: usize,
}

impl Column {
    /// A left-aligned column of at most `max` characters.
    pub(super) const fn left(header: &'static str, max: usize) -> Self {
        Self {
            header,
            align: Align::Left,
            max,
        }
    }

    /// A right-aligned column of at most `max` characters.
    pub(super) const fn right(header: &'static str, max: usize) -> Self {
        Self {
            header,
            align: Align::Right,
            max,
        }
    }
}

/// Rows under fixed columns.
#[derive(Debug)]
pub(super) struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

/// Spaces between columns.
const GAP: usize = 2;
/// The narrowest the last column gets, however wide the others are.
const MIN_LAST: usize = 12;

impl Table {
    pub(super) fn new(columns: &[Column]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are empty, extra cells are dropped.
    pub(super) fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.iter().map(|c| clean(c)).collect();
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    /// The table, each line indented by `indent` spaces and at most `width`
    /// characters long (the last column takes what the others leave).
    pub(super) fn render(&self, indent: usize, width: usize) -> String {
        let count = self.columns.len();
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let widest = self
                    .rows
                    .iter()
                    .map(|row| chars(&row[i]))
                    .chain([chars(column.header)])
                    .max()
                    .unwrap_or(0);
                widest.min(column.max)
            })
            .collect();
        if count > 0 {
            let others: usize = widths[..count - 1].iter().map(|w| w + GAP).sum();
            let room = width.saturating_sub(indent + others).max(MIN_LAST);
            widths[count - 1] = widths[count - 1].min(room);
        }
        let headers: Vec<String> = self.columns.iter().map(|c| c.header.to_owned()).collect();
        let mut out = String::new();
        for cells in std::iter::once(&headers).chain(&self.rows) {
            let mut line = " ".repeat(indent);
            for (i, (cell, column)) in cells.iter().zip(&self.columns).enumerate() {
                let text = truncate(cell, widths[i]);
                let pad = " ".repeat(widths[i] - chars(&text));
                let last = i + 1 == count;
                match column.align {
                    Align::Left if last => line.push_str(&text),
                    Align::Left => line.push_str(&(text + &pad)),
                    Align::Right => line.push_str(&(pad + &text)),
                }
                if !last {
                    line.push_str(&" ".repeat(GAP));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The number of characters (terminal columns, for the text this prints).
pub(super) fn chars(text: &str) -> usize {
    text.chars().count()
}

/// `text` cut to `max` characters, ending in `…` when cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    if chars(text) <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    if max > 0 {
        cut.push('…');
    }
    cut
}

/// `text` on one line: control characters (newlines, tabs, escape sequences) become
/// spaces and bidirectional overrides are dropped, so text from a source can neither
/// break a table nor restyle the terminal.
pub(super) fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_is_cut_to_the_width() {
        let mut table = Table::new(&[
            Column::left("NAME", 6),
            Column::right("N", 5),
            Column::left("NOTE", 100),
        ]);
        table.row(vec!["a".into(), "7".into(), "short".into()]);
        table.row(vec![
            "longer-than-six".into(),
            "1234".into(),
            "x".repeat(40),
        ]);
        table.row(vec!["b".into()]);
        let text = table.render(2, 30);
        assert_eq!(
            text,
            "  NAME       N  NOTE\n\
             \x20 a          7  short\n\
             \x20 longe…  1234  xxxxxxxxxxxxx…\n\
             \x20 b\n"
        );
        assert!(text.lines().all(|l| chars(l) <= 30));
    }

    #[test]
    fn cells_cannot_break_lines_or_restyle_the_terminal() {
        assert_eq!(clean("a\nb\tc\u{1b}[2Jd\u{202e}e"), "a b c [2Jde");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("Díaz", 4), "Díaz");
        assert_eq!(truncate("Díaz-López", 5), "Díaz…");
        assert_eq!(truncate("abc", 0), "");
    }
}

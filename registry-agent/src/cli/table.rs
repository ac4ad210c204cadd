//! Column output as Consul prints it: `columnize` (two spaces between columns, the last column
//! unpadded) and Go's `tabwriter` with padding 6 for key/value listings.

/// Aligns rows into columns separated by two spaces, like `ryanuber/columnize`.
pub fn columnize(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let width = cell.trim().chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let cell = cell.trim();
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        lines.push(line);
    }
    lines.join("\n")
}

/// Two columns through Go's `tabwriter.NewWriter(w, 0, 2, 6, ' ', 0)`: the first column is
/// padded to its widest cell plus six spaces.
pub fn tabwrite(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| {
            let pad = width - k.chars().count() + 6;
            format!("{k}{}{v}", " ".repeat(pad))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn columns_align_with_two_spaces() {
        let out = columnize(&[
            row(&["Node", "Address", "Status"]),
            row(&["n1", "127.0.0.1:8301", "alive"]),
        ]);
        assert_eq!(
            out,
            "Node  Address         Status\nn1    127.0.0.1:8301  alive"
        );
    }

    #[test]
    fn tabwriter_pads_by_six() {
        let out = tabwrite(&[
            ("CreateIndex".to_string(), "5".to_string()),
            ("Key".to_string(), "foo".to_string()),
        ]);
        assert_eq!(out, "CreateIndex      5\nKey              foo");
    }
}

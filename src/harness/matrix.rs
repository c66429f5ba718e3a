//! Scenario matrices: one file that expands into one scenario per cell, each with its own
//! verdict and snapshot (issue: the MS-09 negotiation matrix, partner setting × peer profile).
//!
//! ```toml
//! [matrix]
//! axes = { tls = ["required", "optional"], peer = ["cert", "plain"] }
//!
//! [[matrix.set]]                     # derived values: the first row whose `when` matches
//! when = { tls = "required", peer = "plain" }   # a cell gives the value of each key
//! outcome = "refused"
//!
//! [[matrix.set]]
//! outcome = "accepted"               # no `when`: matches every cell
//!
//! [[matrix.exclude]]                 # cells that are not run (e.g. invalid configurations)
//! when = { tls = "optional", peer = "plain" }
//! ```
//!
//! The rest of the file uses `${tls}`, `${outcome}` …; each cell is the file with those
//! replaced (values are single-line, so every line number stays right), and a step can be
//! kept for some cells only with `when = ["${outcome} == refused"]`.

use std::collections::BTreeMap;
use std::path::Path;

use super::load::{Diagnostic, LoadError};

/// One combination of axis values, with the derived values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// `tls=required,peer=plain`: shown in reports, so a failure says which cell.
    pub name: String,
    pub vars: BTreeMap<String, String>,
}

impl Cell {
    /// File-name-safe form for snapshots: `tls-required__peer-plain`.
    pub fn slug(&self) -> String {
        self.name.replace('=', "-").replace(',', "__")
    }
}

fn err(origin: &Path, line: Option<usize>, message: impl Into<String>) -> LoadError {
    LoadError::Invalid {
        path: origin.to_path_buf(),
        diagnostics: vec![Diagnostic {
            line,
            col: None,
            message: message.into(),
        }],
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The cells of a file, or `None` when it has no `[matrix]`.
pub fn cells(text: &str, origin: &Path) -> Result<Option<Vec<Cell>>, LoadError> {
    let doc: toml::Table = match toml::from_str(text) {
        Ok(d) => d,
        // Syntax errors are reported, with their line, by the ordinary loader; but a
        // `${…}` outside a string makes the file unreadable before expansion: say so.
        Err(e) if text.contains("${") => {
            let line = e.span().map(|s| line_of(text, s.start));
            return Err(err(
                origin,
                line,
                format!(
                    "not valid TOML before matrix expansion ({}); write `${{…}}` inside strings",
                    e.message().trim()
                ),
            ));
        }
        Err(_) => return Ok(None),
    };
    let Some(m) = doc.get("matrix") else {
        return Ok(None);
    };
    let mline = text.find("[matrix]").map(|o| line_of(text, o));
    let m = m
        .as_table()
        .ok_or_else(|| err(origin, mline, "[matrix] must be a table"))?;
    for k in m.keys() {
        if k != "axes" && k != "set" && k != "exclude" {
            return Err(err(
                origin,
                mline,
                format!("[matrix]: unknown key `{k}` (it takes: axes, set, exclude)"),
            ));
        }
    }
    let axes = m.get("axes").and_then(|a| a.as_table()).ok_or_else(|| {
        err(
            origin,
            mline,
            "[matrix] needs `axes = { name = [values…] }`",
        )
    })?;
    if axes.is_empty() {
        return Err(err(origin, mline, "[matrix] axes: at least one axis"));
    }
    let mut names = Vec::new();
    let mut values: Vec<Vec<String>> = Vec::new();
    for (name, vals) in axes {
        let list = vals.as_array().filter(|l| !l.is_empty()).ok_or_else(|| {
            err(
                origin,
                mline,
                format!("axis `{name}`: a non-empty list of strings"),
            )
        })?;
        let mut vs = Vec::new();
        for v in list {
            let s = v
                .as_str()
                .ok_or_else(|| err(origin, mline, format!("axis `{name}`: values are strings")))?;
            if s.contains(['\n', ',', '=']) || s.is_empty() {
                return Err(err(
                    origin,
                    mline,
                    format!("axis `{name}`: value {s:?} must be one line without ',' or '='"),
                ));
            }
            vs.push(s.to_string());
        }
        names.push(name.clone());
        values.push(vs);
    }
    let rows: Vec<&toml::Table> = match m.get("set") {
        None => Vec::new(),
        Some(s) => s
            .as_array()
            .ok_or_else(|| err(origin, mline, "[[matrix.set]] rows"))?
            .iter()
            .map(|r| {
                r.as_table()
                    .ok_or_else(|| err(origin, mline, "[[matrix.set]]: each row is a table"))
            })
            .collect::<Result<_, _>>()?,
    };
    let excludes: Vec<&toml::Table> = match m.get("exclude") {
        None => Vec::new(),
        Some(s) => s
            .as_array()
            .ok_or_else(|| err(origin, mline, "[[matrix.exclude]] rows"))?
            .iter()
            .map(|r| {
                r.as_table()
                    .and_then(|t| t.get("when"))
                    .and_then(|w| w.as_table())
                    .ok_or_else(|| {
                        err(
                            origin,
                            mline,
                            "[[matrix.exclude]]: each row is `when = { axis = value }`",
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    // Every combination, in axis order (the file's key order is not kept by toml::Table,
    // which sorts keys: the cell order is therefore alphabetical by axis name, stable).
    let mut cells = vec![BTreeMap::new()];
    for (name, vs) in names.iter().zip(&values) {
        let mut next = Vec::new();
        for c in &cells {
            for v in vs {
                let mut c: BTreeMap<String, String> = c.clone();
                c.insert(name.clone(), v.clone());
                next.push(c);
            }
        }
        cells = next;
    }
    let matches_when =
        |w: &toml::Table, axis_vals: &BTreeMap<String, String>| -> Result<bool, LoadError> {
            let mut all = true;
            for (axis, want) in w {
                if !names.contains(axis) {
                    return Err(err(
                        origin,
                        mline,
                        format!("matrix `when`: `{axis}` is not an axis"),
                    ));
                }
                let have = axis_vals.get(axis).map(String::as_str);
                all &= match want {
                    toml::Value::String(s) => have == Some(s.as_str()),
                    toml::Value::Array(a) => a.iter().any(|x| x.as_str() == have),
                    _ => {
                        return Err(err(
                            origin,
                            mline,
                            "matrix `when`: values are strings or lists of strings",
                        ));
                    }
                };
            }
            Ok(all)
        };
    let mut out = Vec::new();
    for axis_vals in cells {
        let mut excluded = false;
        for w in &excludes {
            excluded |= matches_when(w, &axis_vals)?;
        }
        if excluded {
            continue;
        }
        let name = names
            .iter()
            .map(|n| format!("{n}={}", axis_vals.get(n).map(String::as_str).unwrap_or("")))
            .collect::<Vec<_>>()
            .join(",");
        let mut vars = axis_vals.clone();
        for row in &rows {
            let matches = match row.get("when") {
                None => true,
                Some(w) => {
                    let w = w.as_table().ok_or_else(|| {
                        err(
                            origin,
                            mline,
                            "[[matrix.set]] when: a table of axis = value",
                        )
                    })?;
                    matches_when(w, &axis_vals)?
                }
            };
            if !matches {
                continue;
            }
            for (k, v) in row.iter().filter(|(k, _)| *k != "when") {
                if names.contains(k) {
                    return Err(err(
                        origin,
                        mline,
                        format!("[[matrix.set]]: `{k}` is an axis; it cannot be set"),
                    ));
                }
                let v = v
                    .as_str()
                    .ok_or_else(|| err(origin, mline, format!("[[matrix.set]] {k}: a string")))?;
                if v.contains('\n') {
                    return Err(err(origin, mline, format!("[[matrix.set]] {k}: one line")));
                }
                vars.entry(k.clone()).or_insert_with(|| v.to_string());
            }
        }
        // Derived values may use the axis values and other derived values
        // (`offered_attr = "version='${offered}'"`); a few passes resolve chains.
        for _ in 0..4 {
            let snapshot = vars.clone();
            for v in vars.values_mut() {
                for (k, val) in &snapshot {
                    *v = v.replace(&format!("${{{k}}}"), val);
                }
            }
        }
        out.push(Cell { name, vars });
    }
    Ok(Some(out))
}

/// The file text for one cell: every `${NAME}` replaced. An unknown name is an error naming
/// its line; a file without a matrix must not use `${…}` at all.
pub fn expand(text: &str, cell: Option<&Cell>, origin: &Path) -> Result<String, LoadError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut offset = 0;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 2..];
        let Some(j) = tail.find('}') else {
            return Err(err(
                origin,
                Some(line_of(text, offset + i)),
                "`${` without a closing `}`",
            ));
        };
        let name = &tail[..j];
        let value = cell.and_then(|c| c.vars.get(name));
        match value {
            Some(v) => out.push_str(v),
            None => {
                let why = match cell {
                    Some(c) => format!(
                        "matrix value `${{{name}}}` is not defined for cell {}",
                        c.name
                    ),
                    None => format!("`${{{name}}}` is used but the file has no [matrix]"),
                };
                return Err(err(origin, Some(line_of(text, offset + i)), why));
            }
        }
        offset += i + 2 + j + 1;
        rest = &tail[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Evaluate a step's `when` clauses after expansion: each `A == B` or `A != B`; all must hold.
pub fn when_holds(clauses: &[String]) -> Result<bool, String> {
    for c in clauses {
        let (a, b, eq) = if let Some((a, b)) = c.split_once("!=") {
            (a, b, false)
        } else if let Some((a, b)) = c.split_once("==") {
            (a, b, true)
        } else {
            return Err(format!("when: {c:?} is not `A == B` or `A != B`"));
        };
        if (a.trim() == b.trim()) != eq {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
title = "x"
covers = ["MS-09"]

[matrix]
axes = { tls = ["required", "optional"], peer = ["cert", "plain"] }

[[matrix.set]]
when = { tls = "required", peer = "plain" }
outcome = "refused"

[[matrix.set]]
outcome = "accepted"
label = "tls-${tls}"
"#;

    #[test]
    fn expands_every_combination_with_derived_values() {
        let cells = cells(FILE, Path::new("m.toml"))
            .expect("ok")
            .expect("a matrix");
        let names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "peer=cert,tls=required",
                "peer=cert,tls=optional",
                "peer=plain,tls=required",
                "peer=plain,tls=optional"
            ]
        );
        let outcome: Vec<&str> = cells.iter().map(|c| c.vars["outcome"].as_str()).collect();
        assert_eq!(outcome, ["accepted", "accepted", "refused", "accepted"]);
        assert_eq!(cells[2].slug(), "peer-plain__tls-required");
        assert_eq!(
            cells[1].vars["label"], "tls-optional",
            "derived values see the axes"
        );
    }

    #[test]
    fn substitutes_and_keeps_lines() {
        let cells = cells(FILE, Path::new("m.toml"))
            .expect("ok")
            .expect("a matrix");
        let text = "a\nb = '${tls}'\nc = '${outcome}'\n";
        let e = expand(text, Some(&cells[2]), Path::new("m.toml")).expect("expands");
        assert_eq!(e, "a\nb = 'required'\nc = 'refused'\n");
        let bad = expand("a\nb = '${nope}'\n", Some(&cells[0]), Path::new("m.toml"))
            .expect_err("unknown");
        assert!(bad.to_string().starts_with("m.toml:2:"), "{bad}");
        let none = expand("x = '${tls}'", None, Path::new("m.toml")).expect_err("no matrix");
        assert!(none.to_string().contains("has no [matrix]"), "{none}");
    }

    #[test]
    fn excluded_cells_are_not_generated() {
        let text = "[matrix]\naxes = { a = ['x', 'y'], b = ['1', '2'] }\n[[matrix.exclude]]\nwhen = { a = 'x', b = ['1'] }\n";
        let cells = cells(text, Path::new("m.toml"))
            .expect("ok")
            .expect("a matrix");
        let names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a=x,b=2", "a=y,b=1", "a=y,b=2"]);
    }

    #[test]
    fn when_clauses() {
        assert_eq!(when_holds(&["a == a".into(), "b != c".into()]), Ok(true));
        assert_eq!(when_holds(&["a == b".into()]), Ok(false));
        assert!(when_holds(&["a = b".into()]).is_err());
    }

    #[test]
    fn bad_matrices_are_errors() {
        for (text, want) in [
            ("[matrix]\naxes = {}\n", "at least one axis"),
            ("[matrix]\naxes = { a = [] }\n", "non-empty list"),
            ("[matrix]\naxes = { a = ['x'] }\nextra = 1\n", "unknown key"),
            (
                "[matrix]\naxes = { a = ['x'] }\n[[matrix.set]]\nwhen = { b = 'x' }\nv = 'y'\n",
                "not an axis",
            ),
            (
                "[matrix]\naxes = { a = ['x'] }\n[[matrix.set]]\na = 'y'\n",
                "is an axis",
            ),
        ] {
            let e = cells(text, Path::new("m.toml")).expect_err(text);
            assert!(e.to_string().contains(want), "{e}");
        }
    }
}

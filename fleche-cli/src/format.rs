//! Printing records: aligned tables, JSON and CSV.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleche::{CallRecord, Runtime, Value};

/// How `ls` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// An aligned table, one column per argument.
    Table,
    /// A JSON array of records.
    Json,
    /// Comma-separated values, one column per argument.
    Csv,
}

/// A value as a table cell: strings as they are, anything else as compact JSON.
pub(crate) fn cell(v: &Value) -> String {
    match v.to_json() {
        serde_json::Value::String(s) => s,
        j => j.to_string(),
    }
}

/// The first 12 hex digits of a digest.
fn short(d: &fleche::Digest) -> String {
    d.to_string().chars().take(12).collect()
}

/// `key12 function(a=1, b=2)`.
pub(crate) fn brief(r: &CallRecord) -> String {
    let args: Vec<String> = r
        .arguments
        .iter()
        .map(|(n, v)| format!("{n}={}", cell(v)))
        .collect();
    format!("{} {}({})", short(&r.key), r.function, args.join(", "))
}

/// UTC `YYYY-MM-DD HH:MM:SS`.
fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1e-3 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

/// The argument names of `records`, in order of first appearance.
fn argument_names(records: &[CallRecord]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in records {
        for (n, _) in &r.arguments {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    names
}

fn row(r: &CallRecord, names: &[String], full_keys: bool) -> Vec<String> {
    let rt = Runtime::from_record(r);
    let mut row = vec![
        if full_keys {
            r.key.to_string()
        } else {
            short(&r.key)
        },
        r.function.clone(),
    ];
    for n in names {
        row.push(r.argument(n).map(cell).unwrap_or_default());
    }
    row.push(rt.map(|t| utc(t.start)).unwrap_or_default());
    row.push(rt.map(|t| seconds(t.wall_time)).unwrap_or_default());
    row.push(if full_keys {
        r.result.to_string()
    } else {
        short(&r.result)
    });
    row
}

/// `records` in `format`.
pub(crate) fn records(records: &[CallRecord], format: Format) -> String {
    let names = argument_names(records);
    match format {
        Format::Table => {
            let mut rows = vec![header(&names, false)];
            rows.extend(records.iter().map(|r| row(r, &names, false)));
            table(&rows)
        }
        Format::Csv => {
            let mut out = String::new();
            let mut rows = vec![header(&names, true)];
            rows.extend(records.iter().map(|r| {
                let mut row = row(r, &names, true);
                // The version, after the function.
                row.insert(2, r.version.clone().unwrap_or_default());
                row
            }));
            for row in rows {
                let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
                out.push_str(&cells.join(","));
                out.push('\n');
            }
            out
        }
        Format::Json => {
            let array: Vec<serde_json::Value> = records.iter().map(json).collect();
            let mut text = serde_json::to_string_pretty(&array).unwrap_or_else(|_| "[]".into());
            text.push('\n');
            text
        }
    }
}

fn header(names: &[String], csv: bool) -> Vec<String> {
    let mut h = if csv {
        vec![
            "key".to_owned(),
            "function".to_owned(),
            "version".to_owned(),
        ]
    } else {
        vec!["KEY".to_owned(), "FUNCTION".to_owned()]
    };
    h.extend(names.iter().cloned());
    if csv {
        h.extend(["start", "wall_time", "result"].map(str::to_owned));
    } else {
        h.extend(["STARTED (UTC)", "WALL", "RESULT"].map(str::to_owned));
    }
    h
}

/// One record as the JSON object `--format json` prints.
pub(crate) fn json(r: &CallRecord) -> serde_json::Value {
    serde_json::json!({
        "key": r.key.to_string(),
        "function": r.function,
        "version": r.version,
        "arguments": serde_json::Value::Object(
            r.arguments.iter().map(|(n, v)| (n.clone(), v.to_json())).collect()
        ),
        "metadata": serde_json::Value::Object(
            r.metadata.iter().map(|(n, v)| (n.clone(), v.to_json())).collect()
        ),
        "result": r.result.to_string(),
    })
}

fn csv_cell(c: &str) -> String {
    if c.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.to_owned()
    }
}

/// Rows as an aligned table, columns separated by two spaces.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i].saturating_sub(c.chars().count())));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00");
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(1_796_245_401)),
            "2026-12-02 21:03:21"
        );
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29 00:00:00"
        );
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("plain"), "plain");
    }
}

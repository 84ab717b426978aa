//! Markdown for acceptance and comparison reports (for terminals, PR comments and CI summaries).

use std::fmt::Write;

use crate::units::fmt_rate;
use crate::verdict::{AcceptReport, Change, CompareReport, Outcome};

fn opt_rate(v: Option<f64>) -> String {
    v.map(fmt_rate).unwrap_or_else(|| "-".into())
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:+.1}%", v * 100.0)).unwrap_or_else(|| "-".into())
}

/// Escapes `|` so a cell cannot break the table.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The overall verdict in words: `PASS`, `WARN`, `FAIL`, or `INCOMPLETE` (outcome
/// `not_measured`: a partial run, or nothing judged).
pub fn verdict_word(r: &AcceptReport) -> &'static str {
    match r.outcome {
        Outcome::Pass => "PASS",
        Outcome::Warn => "WARN",
        Outcome::Fail => "FAIL",
        Outcome::Waived => "WAIVED",
        Outcome::NotMeasured => "INCOMPLETE",
    }
}

/// The acceptance report as a markdown summary and table (one row per item).
pub fn acceptance(r: &AcceptReport) -> String {
    let mut s = String::new();
    let c = &r.counts;
    let _ = writeln!(s, "## Acceptance: {} — **{}**\n", cell(&r.title), verdict_word(r));
    if let Some(p) = &r.partial {
        let _ = writeln!(s, "Partial run, not a full acceptance (resume it with `linkcal run --resume DIR`): {}\n", cell(p));
    } else if r.outcome != Outcome::NotMeasured && c.not_measured > 0 {
        let _ = writeln!(s, "Not a full acceptance: {} items not measured (`--strict` fails them).\n", c.not_measured);
    }
    let _ = writeln!(
        s,
        "{} pass, {} warn, {} fail, {} waived, {} not measured. Rules: `{}`; inputs: {}{}.\n",
        c.pass,
        c.warn,
        c.fail,
        c.waived,
        c.not_measured,
        r.rules_file,
        r.inputs.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", "),
        r.baseline.as_ref().map(|b| format!("; baseline `{b}`")).unwrap_or_default()
    );
    let _ = writeln!(s, "| item | value (B/s, per direction) | outcome | detail |");
    let _ = writeln!(s, "|---|---|---|---|");
    let mut items: Vec<_> = r.items.iter().collect();
    items.sort_by_key(|it| it.outcome.display_rank());
    for it in items {
        let value = match (it.value_Bps, it.lower_bound) {
            (Some(v), true) => format!(">= {}", fmt_rate(v)),
            (v, false) => opt_rate(v),
            (None, true) => "-".into(),
        };
        let detail = match it.outcome {
            Outcome::Waived | Outcome::NotMeasured => it.reason.clone().unwrap_or_default(),
            _ => {
                let worst = it.checks.iter().filter(|c| c.outcome == it.outcome).map(|c| c.detail.clone()).collect::<Vec<_>>();
                if worst.is_empty() {
                    it.reason.clone().unwrap_or_default()
                } else {
                    worst.join("; ")
                }
            }
        };
        let mark = match it.outcome {
            Outcome::Fail => "**fail**",
            Outcome::Warn => "*warn*",
            o => o.as_str(),
        };
        let _ = writeln!(s, "| {} | {} | {} | {} |", cell(&it.item), value, mark, cell(&detail));
    }
    s
}

/// The comparison as markdown: summary, then every row that is not unchanged, then a count of
/// the unchanged ones (all rows are in the JSON).
pub fn comparison(r: &CompareReport) -> String {
    let mut s = String::new();
    let verdict = if r.regression { "REGRESSION" } else { "no regression" };
    let _ = writeln!(s, "## Compare ({}): **{verdict}**\n", r.compared);
    let counts = r.counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        s,
        "Baseline `{}` vs new `{}`; minimum effect {:.1}%; intervals of the change (new/baseline - 1) at {:.0}% for the whole table ({:.3}% each). {counts}.\n",
        r.baseline,
        r.new,
        r.min_effect * 100.0,
        r.confidence * 100.0,
        r.per_item_confidence * 100.0
    );
    let mut shown: Vec<_> = r.rows.iter().filter(|row| row.status != Change::Unchanged).collect();
    shown.sort_by_key(|row| row.status.display_rank());
    if shown.is_empty() {
        let _ = writeln!(s, "Every one of the {} items is within the minimum effect.", r.rows.len());
        return s;
    }
    let _ = writeln!(s, "| item | baseline | new | change | interval | basis | status |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for row in shown {
        let interval = match (row.ci_low, row.ci_high) {
            (Some(a), Some(b)) => format!("[{:+.1}%, {:+.1}%]", a * 100.0, b * 100.0),
            _ => "-".into(),
        };
        let status = match row.status {
            Change::Regression => "**regression**".to_string(),
            st => st.as_str().to_string(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&row.key),
            opt_rate(row.baseline_Bps),
            opt_rate(row.new_Bps),
            pct(row.change),
            interval,
            cell(&row.basis),
            status
        );
    }
    let unchanged = r.rows.iter().filter(|row| row.status == Change::Unchanged).count();
    if unchanged > 0 {
        let _ = writeln!(s, "\n{unchanged} more items unchanged (within ±{:.1}%).", r.min_effect * 100.0);
    }
    s
}

//! JUnit XML so CI systems show each segment, series group and path as a test case: a fail or
//! regression is a `<failure>`, waived and not-measured items are `<skipped>` with the reason,
//! and warnings pass with the warning in `<system-out>`.

use std::fmt::Write;

use crate::units::fmt_rate;
use crate::verdict::{AcceptReport, Change, CompareReport, ItemKind, Outcome};

/// Escapes text for XML attributes and content.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

struct Case {
    class: String,
    name: String,
    failure: Option<String>,
    skipped: Option<String>,
    out: Option<String>,
}

fn suite(s: &mut String, name: &str, cases: &[Case]) {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let skipped = cases.iter().filter(|c| c.skipped.is_some()).count();
    let _ = writeln!(
        s,
        r#"  <testsuite name="{}" tests="{}" failures="{failures}" errors="0" skipped="{skipped}">"#,
        xml_escape(name),
        cases.len()
    );
    for c in cases {
        let _ = write!(s, r#"    <testcase classname="{}" name="{}""#, xml_escape(&c.class), xml_escape(&c.name));
        if c.failure.is_none() && c.skipped.is_none() && c.out.is_none() {
            let _ = writeln!(s, "/>");
            continue;
        }
        let _ = writeln!(s, ">");
        if let Some(f) = &c.failure {
            let _ = writeln!(s, r#"      <failure message="{}">{}</failure>"#, xml_escape(f), xml_escape(f));
        }
        if let Some(k) = &c.skipped {
            let _ = writeln!(s, r#"      <skipped message="{}"/>"#, xml_escape(k));
        }
        if let Some(o) = &c.out {
            let _ = writeln!(s, "      <system-out>{}</system-out>", xml_escape(o));
        }
        let _ = writeln!(s, "    </testcase>");
    }
    let _ = writeln!(s, "  </testsuite>");
}

fn accept_cases(r: &AcceptReport) -> Vec<Case> {
    r.items
        .iter()
        .map(|it| {
            let class = match it.kind {
                ItemKind::Segment => "linkcal.acceptance.segment",
                ItemKind::Group => "linkcal.acceptance.series_group",
                ItemKind::Path => "linkcal.acceptance.path",
                ItemKind::RouteBottleneck => "linkcal.acceptance.route_bottleneck",
            };
            let details =
                it.checks.iter().map(|c| format!("[{}] {}: {}", c.outcome, c.rule, c.detail)).collect::<Vec<_>>().join("\n");
            let reason = it.reason.clone().unwrap_or_default();
            let mut case = Case { class: class.into(), name: it.item.clone(), failure: None, skipped: None, out: None };
            match it.outcome {
                Outcome::Fail => case.failure = Some(if details.is_empty() { reason } else { details }),
                Outcome::Waived => case.skipped = Some(format!("waived: {reason}")),
                Outcome::NotMeasured => case.skipped = Some(format!("not measured: {reason}")),
                Outcome::Warn => case.out = Some(format!("WARN\n{details}")),
                Outcome::Pass => case.out = (!details.is_empty()).then_some(details),
            }
            case
        })
        .collect()
}

fn compare_cases(r: &CompareReport) -> Vec<Case> {
    r.rows
        .iter()
        .map(|row| {
            let text = format!(
                "{}: baseline {}, new {}, change {}, interval [{}, {}] ({}), minimum effect {:.1}%",
                row.status.as_str(),
                row.baseline_Bps.map(fmt_rate).unwrap_or_else(|| "-".into()),
                row.new_Bps.map(fmt_rate).unwrap_or_else(|| "-".into()),
                row.change.map(|c| format!("{:+.2}%", c * 100.0)).unwrap_or_else(|| "-".into()),
                row.ci_low.map(|c| format!("{:+.2}%", c * 100.0)).unwrap_or_else(|| "-".into()),
                row.ci_high.map(|c| format!("{:+.2}%", c * 100.0)).unwrap_or_else(|| "-".into()),
                row.basis,
                r.min_effect * 100.0
            );
            let mut case = Case {
                class: format!("linkcal.compare.{}", r.compared),
                name: row.key.clone(),
                failure: None,
                skipped: None,
                out: None,
            };
            match row.status {
                Change::Regression => case.failure = Some(text),
                Change::Missing | Change::Added => case.skipped = Some(text),
                Change::Improvement | Change::Inconclusive | Change::Unchanged => case.out = Some(text),
            }
            case
        })
        .collect()
}

/// JUnit XML with one suite per report given.
pub fn junit(accept: Option<&AcceptReport>, compare: Option<&CompareReport>) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"linkcal\">\n");
    if let Some(a) = accept {
        suite(&mut s, &format!("acceptance: {}", a.title), &accept_cases(a));
    }
    if let Some(c) = compare {
        suite(&mut s, &format!("compare: {} vs {}", c.new, c.baseline), &compare_cases(c));
    }
    s.push_str("</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(super::xml_escape("a<b & \"c\" GPU_P[0]_PCI"), "a&lt;b &amp; &quot;c&quot; GPU_P[0]_PCI");
        assert_eq!(super::xml_escape("x\u{1}y"), "x y");
    }
}

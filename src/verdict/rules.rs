//! Acceptance rules (`linkcal.rules/1`, TOML): per segment, path or glob of them, in the three
//! styles operators use: an absolute floor in B/s, a fraction of the nominal link rate, and a
//! deviation from a fleet baseline; each may warn before it fails, and a rule may waive items
//! with a reason. Parsing checks everything that does not depend on the rack; [`Rules::check_shape`]
//! checks segment and path names against the measured rack's shape.

#![allow(non_snake_case)]

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::spec::{Dir, HopOptions, RackShape, RouteKind, RouteSet, SegmentId};
use crate::units::parse_rate;

/// Schema id of rules files.
pub const RULES_SCHEMA: &str = "linkcal.rules/1";

/// Which kind of threshold a check applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Style {
    /// An absolute floor in B/s.
    Floor,
    /// A fraction of the nominal link rate (from discovery, or the rule's `nominal`).
    NominalFraction,
    /// A relative deviation from the same item in a fleet baseline file (e.g. -0.05).
    BaselineDeviation,
}

/// One threshold of a rule: the value below which the item fails and the one below which it
/// warns, in the rule's own terms (B/s, fraction of nominal, or relative deviation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// Style of the numbers below.
    pub style: Style,
    /// Fail below this (B/s for floors, a fraction for nominal, a deviation for baselines).
    pub fail: Option<f64>,
    /// Warn below this (same unit as `fail`; at least `fail` when both are given).
    pub warn: Option<f64>,
}

/// Which payload of a path a rule judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadSel {
    /// The largest payload measured solo on that path.
    Largest,
    /// Exactly this many bytes.
    Bytes(u64),
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Display name (`name`, or `rule[i]`).
    pub name: String,
    /// Position in the file (0-based), for error messages (`rule[i]`).
    pub index: usize,
    /// The rules file it came from.
    pub file: PathBuf,
    /// Segment names or globs (`*` matches any run of characters), e.g. `GPU_P[*]_PCI`.
    pub segments: Vec<String>,
    /// Path names or globs, e.g. `prefill_to_decode:*`, `decode_inter_rank:0->1`.
    pub paths: Vec<String>,
    /// Directions of segments this rule judges.
    pub dirs: Vec<Dir>,
    /// Which payload of a path it judges.
    pub payload: PayloadSel,
    /// Nominal link rate per direction, B/s, used when discovery gives none.
    pub nominal_Bps: Option<f64>,
    /// Thresholds; every one is checked.
    pub thresholds: Vec<Threshold>,
    /// When set, matching items are waived with this reason.
    pub waive: Option<String>,
}

/// A validated rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Where it was read from.
    pub file: PathBuf,
    /// Title shown in reports.
    pub title: String,
    /// Fleet baseline file named in the rules (resolved against the rules file's folder).
    pub baseline: Option<PathBuf>,
    /// Rules in file order.
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    schema: String,
    title: Option<String>,
    baseline: Option<String>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRate {
    Num(f64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawPayload {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    #[serde(default)]
    segments: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    dir: Option<String>,
    payload: Option<RawPayload>,
    nominal: Option<RawRate>,
    floor: Option<RawRate>,
    warn_floor: Option<RawRate>,
    nominal_fraction: Option<f64>,
    warn_nominal_fraction: Option<f64>,
    baseline_deviation: Option<f64>,
    warn_baseline_deviation: Option<f64>,
    waive: Option<String>,
}

/// True when `name` matches `pattern`, where `*` matches any run of characters (possibly
/// empty) and every other character matches itself (so `[`, `]` are literal).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0usize, 0usize, None, 0usize);
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

impl Rules {
    /// Reads and validates a rules file; errors name the file and the field (`rule[2].floor`).
    pub fn load(path: &Path) -> Result<Rules, InputError> {
        let text = crate::error::read_input(path)?;
        Rules::parse(path, &text)
    }

    /// Parses rules text read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Rules, InputError> {
        let raw: RawRules = crate::error::parse_toml(path, text)?;
        if raw.schema != RULES_SCHEMA {
            return Err(InputError::field(
                path,
                "schema",
                format!("is '{}', expected '{RULES_SCHEMA}': this file is of another kind or version", raw.schema),
            ));
        }
        if raw.rule.is_empty() {
            return Err(InputError::field(path, "rule", "no [[rule]] entries: a rules file needs at least one rule"));
        }
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let rules = raw.rule.into_iter().enumerate().map(|(i, r)| convert(path, i, r)).collect::<Result<Vec<_>, _>>()?;
        Ok(Rules {
            file: path.to_path_buf(),
            title: raw.title.unwrap_or_else(|| path.display().to_string()),
            baseline: raw.baseline.map(|b| base_dir.join(b)),
            rules,
        })
    }

    /// Checks every segment and path name against the rack's shape: an exact name must exist,
    /// a glob must match at least one segment or route of this rack.
    pub fn check_shape(&self, shape: &RackShape) -> Result<(), InputError> {
        let seg_names: Vec<String> = shape.segments().iter().map(|s| s.to_string()).collect();
        let routes = route_names(shape);
        for r in &self.rules {
            for (j, pat) in r.segments.iter().enumerate() {
                let field = format!("rule[{}].segments[{j}]", r.index);
                if !pat.contains('*') {
                    let id: SegmentId = pat.parse().map_err(|e| InputError::field(&r.file, &field, format!("{e}")))?;
                    shape.check_segment(id).map_err(|e| InputError::field(&r.file, &field, e.to_string()))?;
                } else if !seg_names.iter().any(|n| glob_match(pat, n)) {
                    return Err(InputError::field(
                        &r.file,
                        &field,
                        format!("'{pat}' matches no segment of this rack (segments look like GPU_P[0]_PCI, IB_Cable_D[1]; '*' is the only wildcard)"),
                    ));
                }
            }
            for (j, pat) in r.paths.iter().enumerate() {
                let field = format!("rule[{}].paths[{j}]", r.index);
                // A glob names route kinds (it may match no route on a small rack, e.g. Path 1
                // with one prefill GPU); an exact name must be a route of this rack.
                let kind_ok = pat == "*"
                    || pat.split_once(':').is_some_and(|(k, _)| RouteKind::ALL.iter().any(|rk| glob_match(k, rk.as_str())));
                let ok = if pat.contains('*') { kind_ok } else { routes.iter().any(|n| n == pat) };
                if !ok {
                    return Err(InputError::field(
                        &r.file,
                        &field,
                        format!("'{pat}' names no route of this rack (routes look like prefill_to_decode:0->0, decode_inter_rank:*; kinds: {})",
                            RouteKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Several rules files judged together (e.g. PCIe + IB + Ethernet): rules in order, titles
    /// joined, the first baseline named. `None` for an empty list.
    pub fn merge(all: Vec<Rules>) -> Option<Rules> {
        let mut it = all.into_iter();
        let mut first = it.next()?;
        for r in it {
            first.title = format!("{} + {}", first.title, r.title);
            first.baseline = first.baseline.or(r.baseline);
            first.rules.extend(r.rules);
        }
        Some(first)
    }

    /// True when any rule has a baseline-deviation threshold.
    pub fn needs_baseline(&self) -> bool {
        self.rules.iter().any(|r| r.thresholds.iter().any(|t| t.style == Style::BaselineDeviation))
    }
}

/// Every route of a rack (spec paths and isolation routes) as `kind:src->dst`.
pub fn route_names(shape: &RackShape) -> Vec<String> {
    let opt = HopOptions { decode_ib_nic: true, staged_in_host: false };
    RouteSet::build(shape, None, opt, true).map(|set| set.routes.iter().map(|r| r.path.to_string()).collect()).unwrap_or_default()
}

fn rate(path: &Path, field: String, v: Option<RawRate>) -> Result<Option<f64>, InputError> {
    match v {
        None => Ok(None),
        Some(RawRate::Num(x)) if x.is_finite() && x > 0.0 => Ok(Some(x)),
        Some(RawRate::Num(x)) => Err(InputError::field(path, field, format!("{x} must be a positive rate in B/s"))),
        Some(RawRate::Text(t)) => parse_rate(&t).map(Some).map_err(|e| InputError::field(path, field, e.to_string())),
    }
}

fn convert(path: &Path, i: usize, r: RawRule) -> Result<Rule, InputError> {
    let f = |name: &str| format!("rule[{i}].{name}");
    if r.segments.is_empty() && r.paths.is_empty() {
        return Err(InputError::field(path, f("segments"), "a rule needs `segments` or `paths` (names or globs)"));
    }
    let dirs = match r.dir.as_deref() {
        None | Some("both") => vec![Dir::Up, Dir::Down],
        Some("up") => vec![Dir::Up],
        Some("down") => vec![Dir::Down],
        Some(other) => {
            return Err(InputError::field(path, f("dir"), format!("'{other}' is not a direction: use up, down or both")))
        }
    };
    let payload = match r.payload {
        None => PayloadSel::Largest,
        Some(RawPayload::Text(t)) if t == "largest" => PayloadSel::Largest,
        Some(RawPayload::Bytes(b)) if b > 0 => PayloadSel::Bytes(b),
        Some(_) => return Err(InputError::field(path, f("payload"), "use \"largest\" or a positive number of bytes")),
    };
    let nominal_Bps = rate(path, f("nominal"), r.nominal)?;
    let floor = rate(path, f("floor"), r.floor)?;
    let warn_floor = rate(path, f("warn_floor"), r.warn_floor)?;
    let mut thresholds = Vec::new();
    let checks = [
        (Style::Floor, floor, warn_floor, "floor", "warn_floor"),
        (Style::NominalFraction, r.nominal_fraction, r.warn_nominal_fraction, "nominal_fraction", "warn_nominal_fraction"),
        (
            Style::BaselineDeviation,
            r.baseline_deviation,
            r.warn_baseline_deviation,
            "baseline_deviation",
            "warn_baseline_deviation",
        ),
    ];
    for (style, fail, warn, fname, wname) in checks {
        for (v, name) in [(fail, fname), (warn, wname)] {
            if let Some(v) = v {
                let ok = match style {
                    Style::Floor => true,
                    Style::NominalFraction => v > 0.0 && v <= 2.0,
                    Style::BaselineDeviation => v > -1.0 && v < 1.0,
                };
                if !ok || !v.is_finite() {
                    let want = if style == Style::NominalFraction {
                        "a fraction in (0, 2], e.g. 0.9"
                    } else {
                        "a relative deviation in (-1, 1), e.g. -0.05"
                    };
                    return Err(InputError::field(path, f(name), format!("{v} is out of range: use {want}")));
                }
            }
        }
        if let (Some(a), Some(w)) = (fail, warn) {
            if w < a {
                return Err(InputError::field(
                    path,
                    f(wname),
                    format!("warn threshold {w} is below the fail threshold {a}: a rule warns before it fails"),
                ));
            }
        }
        if fail.is_some() || warn.is_some() {
            thresholds.push(Threshold { style, fail, warn });
        }
    }
    if thresholds.is_empty() && r.waive.is_none() {
        return Err(InputError::field(
            path,
            f("floor"),
            "the rule has no threshold: give floor, nominal_fraction or baseline_deviation (or waive = \"reason\")",
        ));
    }
    if let Some(w) = &r.waive {
        if w.trim().is_empty() {
            return Err(InputError::field(path, f("waive"), "a waiver needs a reason"));
        }
    }
    Ok(Rule {
        name: r.name.unwrap_or_else(|| format!("rule[{i}]")),
        index: i,
        file: path.to_path_buf(),
        segments: r.segments,
        paths: r.paths,
        dirs,
        payload,
        nominal_Bps,
        thresholds,
        waive: r.waive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Rules, InputError> {
        Rules::parse(Path::new("r.toml"), text)
    }

    #[test]
    fn globs() {
        assert!(glob_match("GPU_P[*]_PCI", "GPU_P[12]_PCI"));
        assert!(!glob_match("GPU_P[*]_PCI", "GPU_D[1]_PCI"));
        assert!(glob_match("*", "IB_Cable_D[0]"));
        assert!(glob_match("IB_*", "IB_NIC_P[0]_PCI"));
        assert!(!glob_match("IB_Cable_P[1]", "IB_Cable_P[10]"));
        assert!(glob_match("prefill_to_decode:*", "prefill_to_decode:1->0"));
        assert!(glob_match("*:0->*", "decode_inter_rank:0->1"));
    }

    #[test]
    fn parses_a_full_rule() {
        let r = parse(
            r#"schema = "linkcal.rules/1"
title = "t"
[[rule]]
name = "pcie"
segments = ["GPU_P[*]_PCI"]
dir = "up"
nominal = "63 GB/s"
floor = "40 GB/s"
warn_floor = "45GB/s"
nominal_fraction = 0.8
warn_nominal_fraction = 0.85
"#,
        )
        .unwrap();
        let rule = &r.rules[0];
        assert_eq!(rule.dirs, vec![Dir::Up]);
        assert_eq!(rule.nominal_Bps, Some(63e9));
        assert_eq!(rule.thresholds[0], Threshold { style: Style::Floor, fail: Some(40e9), warn: Some(45e9) });
        assert_eq!(rule.thresholds[1].style, Style::NominalFraction);
    }

    #[test]
    fn errors_name_field() {
        let head = "schema = \"linkcal.rules/1\"\n[[rule]]\nsegments = [\"GPU_P[0]_PCI\"]\n";
        let e = parse(&format!("{head}floor = \"40 GB\"\n")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("rule[0].floor"));
        assert!(e.to_string().contains("unknown unit 'GB'"), "{e}");
        let e = parse(&format!("{head}flor = 3\n")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("rule[0].flor"));
        let e = parse(&format!("{head}floor = 5\nwarn_floor = 4\n")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("rule[0].warn_floor"));
        let e = parse(&format!("{head}nominal_fraction = 90\n")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("rule[0].nominal_fraction"));
        let e = parse(&format!("{head}dir = \"sideways\"\nfloor = 1\n")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("rule[0].dir"));
        let e = parse(&format!("{head}\n")).unwrap_err();
        assert!(e.to_string().contains("no threshold"));
        let e = parse("schema = \"linkcal.rules/2\"\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("schema"));
    }

    #[test]
    fn shape_checks() {
        let shape = RackShape::new(2, 2, 1).unwrap();
        let ok = parse("schema = \"linkcal.rules/1\"\n[[rule]]\nsegments = [\"IB_Cable_*\", \"GPU_D[1]_PCI\"]\npaths = [\"prefill_to_decode:*\"]\nfloor = 1\n").unwrap();
        ok.check_shape(&shape).unwrap();
        for (seg, want) in
            [("GPU_Q[0]_PCI", "unknown segment"), ("IB_NIC_P[1]_PCI", "does not exist"), ("GPU_X*", "matches no segment")]
        {
            let r = parse(&format!("schema = \"linkcal.rules/1\"\n[[rule]]\nsegments = [\"{seg}\"]\nfloor = 1\n")).unwrap();
            let e = r.check_shape(&shape).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("rule[0].segments[0]"));
            assert!(e.to_string().contains(want), "{e}");
        }
        for bad in ["prefill_to_decode:5->0", "prefil_to_decode:*", "prefill_to_decode"] {
            let r = parse(&format!("schema = \"linkcal.rules/1\"\n[[rule]]\npaths = [\"{bad}\"]\nfloor = 1\n")).unwrap();
            assert_eq!(r.check_shape(&shape).unwrap_err().field.as_deref(), Some("rule[0].paths[0]"), "{bad}");
        }
        // A glob of a real kind fits a rack where that kind has no route (one prefill GPU: no Path 1).
        let r = parse("schema = \"linkcal.rules/1\"\n[[rule]]\npaths = [\"prefill_inter_rank:*\", \"*\"]\nfloor = 1\n").unwrap();
        r.check_shape(&RackShape::new(1, 1, 1).unwrap()).unwrap();
    }
}

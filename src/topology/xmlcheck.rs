//! Checks an XML file before hwloc reads it: hwloc's readers print to stderr or abort on some
//! malformed input, so a missing, empty, non-XML, truncated or foreign file gets a clear error
//! naming the file first. The root element tells an hwloc export (`<topology>`) from an
//! NCCL/RCCL topology (`<system>`).

use std::path::Path;

use super::TopologyError;

/// Checks that `bytes` is a well-formed XML document whose root element is hwloc's
/// `<topology>` (v1 and v2 exports both use it).
pub fn check(path: &Path, bytes: &[u8]) -> Result<(), TopologyError> {
    match root(path, bytes)?.as_str() {
        "topology" => Ok(()),
        _ => Err(TopologyError::input(
            path,
            "is an NCCL topology file (<system version=...>), not an hwloc export: read it with --nccl-topo or --xml".to_string(),
        )),
    }
}

/// Checks that `bytes` is well-formed XML with root `<topology>` (hwloc) or `<system>`
/// (NCCL/RCCL); returns that root's name.
pub fn root(path: &Path, bytes: &[u8]) -> Result<String, TopologyError> {
    let bad = |m: String| Err(TopologyError::input(path, m));
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bad("is not UTF-8 text, so not an hwloc XML export".into());
    };
    let body = text.trim_start_matches('\u{feff}').trim_start();
    if body.is_empty() {
        return bad("is empty: expected an hwloc XML export (`lstopo-no-graphics --whole-io --of xml FILE`)".into());
    }
    if !body.starts_with('<') {
        return bad("is not XML: expected an hwloc XML export (`lstopo-no-graphics --whole-io --of xml FILE`)".into());
    }
    let root = match scan(body) {
        Ok(root) => root,
        Err(m) => return bad(format!("is not well-formed XML ({m}); the file may be truncated: export it again")),
    };
    match root.as_str() {
        "topology" | "system" => Ok(root),
        other => bad(format!(
            "is XML with root element <{other}>, neither an hwloc export (<topology>) nor an NCCL topology (<system>): \
             export the server with `lstopo-no-graphics --whole-io --of xml FILE`"
        )),
    }
}

/// Walks the tags, checking nesting; returns the root element's name.
fn scan(text: &str) -> Result<String, String> {
    let b = text.as_bytes();
    let mut stack: Vec<&str> = Vec::new();
    let mut root: Option<String> = None;
    let mut i = 0;
    while let Some(off) = text[i..].find('<') {
        let start = i + off;
        let rest = &text[start..];
        if rest.starts_with("<?") {
            i = start + rest.find("?>").ok_or("unterminated <? ... ?>")? + 2;
        } else if rest.starts_with("<!--") {
            i = start + rest.find("-->").ok_or("unterminated comment")? + 3;
        } else if rest.starts_with("<![CDATA[") {
            i = start + rest.find("]]>").ok_or("unterminated CDATA")? + 3;
        } else if rest.starts_with("<!") {
            i = start + rest.find('>').ok_or("unterminated <!DOCTYPE>")? + 1;
        } else {
            let end = tag_end(b, start).ok_or_else(|| format!("unterminated tag at byte {start}"))?;
            let inner = &text[start + 1..end];
            i = end + 1;
            if let Some(name) = inner.strip_prefix('/') {
                let name = name.trim();
                match stack.pop() {
                    Some(open) if open == name => {}
                    Some(open) => return Err(format!("</{name}> closes <{open}> at byte {start}")),
                    None => return Err(format!("</{name}> without an opening tag at byte {start}")),
                }
            } else {
                let name = inner.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("");
                if name.is_empty() {
                    return Err(format!("a tag without a name at byte {start}"));
                }
                if stack.is_empty() && root.is_some() {
                    return Err(format!("a second root element <{name}> at byte {start}"));
                }
                root.get_or_insert_with(|| name.to_string());
                if !inner.ends_with('/') {
                    stack.push(name);
                }
            }
        }
        if stack.is_empty() && root.is_some() && !text[i..].trim().is_empty() && !text[i..].trim_start().starts_with("<!--") {
            return Err("content after the root element".into());
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> is never closed (the file ends early)"));
    }
    root.ok_or_else(|| "no element".to_string())
}

/// Index of the `>` closing the tag that starts at `start`, skipping quoted attribute values.
fn tag_end(b: &[u8], start: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (j, &c) in b.iter().enumerate().skip(start + 1) {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(c),
            (None, b'>') => return Some(j),
            (None, b'<') => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        check(Path::new("t.xml"), text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn accepts_hwloc_shapes() {
        let ok = [
            "<?xml version=\"1.0\"?>\n<!DOCTYPE topology SYSTEM \"hwloc2.dtd\">\n<topology version=\"2.0\"><object type=\"Machine\" a=\"x>y\"><info name=\"a\" value=\"b\"/></object></topology>\n",
            "<topology>\n  <object type=\"Machine\"/>\n</topology>",
        ];
        for t in ok {
            check(Path::new("t.xml"), t.as_bytes()).unwrap();
        }
    }

    #[test]
    fn names_the_problem() {
        assert!(err("").contains("empty"));
        assert!(err("hello").contains("not XML"));
        assert!(err("<topology><object type=\"Machine\">").contains("never closed"));
        assert!(err("<topology><object type=\"Mach").contains("unterminated tag"));
        assert!(err("<topology><a></b></topology>").contains("closes <a>"));
        assert!(err("<system version=\"1\"><cpu/></system>").contains("NCCL topology"));
        assert_eq!(root(Path::new("t.xml"), b"<system version=\"1\"><cpu/></system>").unwrap(), "system");
        assert!(err("<html><body/></html>").contains("root element <html>"));
        assert!(err("<topology/><topology/>").contains("after the root"));
        assert!(err("<topology>").contains("t.xml"));
    }
}

//! Finds where a node is written in YAML source, from its path: serde_yaml reports positions only for
//! syntax errors, but a semantic error ("unknown role") should point at the line too.
//!
//! A line scanner, not a parser: it follows block mappings by indentation and flow mappings (`{ … }`)
//! within a node's text, which covers how policies are written. When it cannot tell, it answers `None`
//! and the error carries the YAML path alone.

/// One step of a YAML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// The text of one node: from a byte offset to the end of its block.
struct Region<'a> {
    src: &'a str,
    start: usize,
    end: usize,
}

/// 1-based (line, column) of `path` in `src`: of the key for a key step, of the item for an index step.
pub(crate) fn locate(src: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let mut region = Region {
        src,
        start: 0,
        end: src.len(),
    };
    let mut at = None;
    for seg in path {
        let found = match seg {
            Seg::Key(k) => find_key(&region, k)?,
            Seg::Index(i) => find_item(&region, *i)?,
        };
        at = Some(found.0);
        region = Region {
            src,
            start: found.1,
            end: node_end(src, found.0, found.1, region.end),
        };
    }
    match at {
        Some(offset) => Some(position(src, offset)),
        // The document itself: its first line that is not blank or a comment.
        None => first_content(src).map(|offset| position(src, offset)),
    }
}

fn first_content(src: &str) -> Option<usize> {
    let mut pos = 0;
    for line in src.split_inclusive('\n') {
        let t = line.trim_start();
        if !t.is_empty() && !t.starts_with('#') && !t.starts_with("---") {
            return Some(pos + (line.len() - t.len()));
        }
        pos += line.len();
    }
    None
}

/// Where mapping key `key` is written for the second time: serde_yaml reports a duplicate key at the
/// start of the mapping, but the person wants the repeated line.
pub(crate) fn locate_duplicate(src: &str, key: &str) -> Option<(usize, usize)> {
    let region = Region {
        src,
        start: 0,
        end: src.len(),
    };
    let first = find_key(&region, key)?;
    let rest = Region {
        src,
        start: first.1,
        end: src.len(),
    };
    // Any later occurrence in key position; the first such is the duplicate the parser tripped on.
    let mut from = rest.start;
    while from < src.len() {
        let r = Region {
            src,
            start: from,
            end: src.len(),
        };
        let (at, after) = find_key(&r, key)?;
        if at > first.0 {
            return Some(position(src, at));
        }
        from = after;
    }
    None
}

fn position(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn line_start(src: &str, offset: usize) -> usize {
    src.get(..offset)
        .and_then(|b| b.rfind('\n'))
        .map_or(0, |i| i + 1)
}

/// The text of the node whose key (or item) starts at `key` and whose value starts after `value`: a
/// flow collection up to its matching bracket; otherwise up to the first later line that is not blank or
/// a comment and is indented no deeper than the key itself.
fn node_end(src: &str, key: usize, value: usize, limit: usize) -> usize {
    let rest = src.get(value..limit).unwrap_or_default();
    let skipped = rest.len() - rest.trim_start_matches(' ').len();
    if let Some(open) = rest
        .get(skipped..)
        .and_then(|r| r.chars().next())
        .filter(|c| matches!(c, '{' | '['))
    {
        let mut depth = 0i32;
        let mut quote: Option<char> = None;
        for (j, c) in rest.get(skipped..).unwrap_or_default().char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '{' | '[') => depth += 1,
                (None, '}' | ']') => {
                    depth -= 1;
                    if depth == 0 {
                        return value + skipped + j + 1;
                    }
                }
                _ => {}
            }
        }
        let _ = open;
        return limit;
    }
    let key_col = key - line_start(src, key);
    let mut pos = src
        .get(key..limit)
        .and_then(|r| r.find('\n'))
        .map_or(limit, |i| key + i + 1);
    while pos < limit {
        let line = src
            .get(pos..limit)
            .and_then(|r| r.split('\n').next())
            .unwrap_or_default();
        let trimmed = line.trim_start();
        if !trimmed.is_empty() && !trimmed.starts_with('#') && indent_of(line) <= key_col {
            return pos;
        }
        pos += line.len() + 1;
    }
    limit
}

/// The key `k` directly inside `region`: at the smallest indentation among block keys, or the first in
/// flow style. Returns (offset of the key, offset just after its colon).
fn find_key(region: &Region<'_>, k: &str) -> Option<(usize, usize)> {
    let text = region.src.get(region.start..region.end)?;
    let mut best: Option<(usize, usize, usize)> = None; // (indent rank, key offset, after colon)
    for quoted in [k.to_owned(), format!("\"{k}\""), format!("'{k}'")] {
        // An empty key (`"": …`) is found only in its quoted forms: the empty needle matches
        // everywhere and would never move `from` (found by the policy_yaml fuzz target: a hang).
        if quoted.is_empty() {
            continue;
        }
        let mut from = 0;
        while let Some(i) = text.get(from..).and_then(|t| t.find(&quoted)) {
            let at = from + i;
            from = at + quoted.len();
            let after = text.get(from..).unwrap_or_default();
            let rest = after.trim_start_matches(' ');
            if !rest.starts_with(':') {
                continue;
            }
            let before = text.get(..at).unwrap_or_default();
            let prev = before.chars().last();
            let line_prefix = before.rsplit('\n').next().unwrap_or_default();
            let block = line_prefix
                .trim_start_matches(' ')
                .trim_start_matches("- ")
                .trim()
                .is_empty();
            if !(block || matches!(prev, Some('{') | Some(',') | Some(' '))) {
                continue;
            }
            let colon = from + (after.len() - rest.len()) + 1;
            let rank = if block { line_prefix.len() } else { usize::MAX };
            if best.is_none_or(|(r, o, _)| rank < r || (rank == r && at < o)) {
                best = Some((rank, at, colon));
            }
        }
    }
    best.map(|(_, at, colon)| (region.start + at, region.start + colon))
}

/// Item `i` of the sequence in `region`, flow (`[a, b]`) or block (`- a`).
fn find_item(region: &Region<'_>, i: usize) -> Option<(usize, usize)> {
    let text = region.src.get(region.start..region.end)?;
    let lead = text.len() - text.trim_start().len();
    let body = text.get(lead..)?;
    if let Some(inner) = body.strip_prefix('[') {
        let mut depth = 0i32;
        let mut item = 0usize;
        let mut item_start = Some(1usize);
        for (j, c) in inner.char_indices() {
            match c {
                '[' | '{' => depth += 1,
                ']' | '}' if depth == 0 => break,
                ']' | '}' => depth -= 1,
                ',' if depth == 0 => {
                    item += 1;
                    item_start = Some(j + 2);
                }
                c if !c.is_whitespace() && item == i => {
                    let s = item_start.take().map(|_| j + 1);
                    if let Some(s) = s {
                        let off = region.start + lead + s;
                        return Some((off, off));
                    }
                }
                _ => {}
            }
        }
        return None;
    }
    let mut n = 0usize;
    let mut pos = 0usize;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start_matches(' ');
        if t.starts_with("- ") || t.trim_end() == "-" {
            if n == i {
                let off = region.start + pos + (line.len() - t.len()) + 2;
                return Some((off, off));
            }
            n += 1;
        }
        pos += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    const DOC: &str = "version: 1\nsubjects:\n  bank-a:  { match: { san_uri: \"spiffe://x\" }, roles: [provider, auditor] }\n  officer:\n    match:\n      cn: officer-1\n    roles:\n      - security-officer\nrecord_types:\n  loan:\n    fields:\n      age: { type: integer, transform: { generalize: { bucket: 0 } } }\n      type_note: { type: string, transform: keep }\n";

    #[test]
    fn an_empty_key_is_found_quoted_and_never_hangs() {
        // Found by the policy_yaml fuzz target: the empty needle never advanced the search.
        assert_eq!(locate("version: 1\n\"\": 1\n", &[k("")]), Some((2, 1)));
        assert_eq!(locate("a: {'': 1}\n", &[k("a"), k("")]), Some((1, 5)));
        assert_eq!(locate("version: 1\n", &[k("")]), None);
    }

    #[test]
    fn finds_block_and_flow_keys() {
        assert_eq!(locate(DOC, &[k("version")]), Some((1, 1)));
        assert_eq!(locate(DOC, &[k("subjects"), k("bank-a")]), Some((3, 3)));
        assert_eq!(
            locate(DOC, &[k("subjects"), k("bank-a"), k("roles")]),
            Some((3, 48))
        );
        assert_eq!(
            locate(DOC, &[k("subjects"), k("officer"), k("match"), k("cn")]),
            Some((6, 7))
        );
        assert_eq!(
            locate(
                DOC,
                &[
                    k("record_types"),
                    k("loan"),
                    k("fields"),
                    k("age"),
                    k("transform"),
                    k("generalize"),
                    k("bucket")
                ]
            ),
            Some((12, 56))
        );
        assert_eq!(
            locate(
                DOC,
                &[
                    k("record_types"),
                    k("loan"),
                    k("fields"),
                    k("type_note"),
                    k("type")
                ]
            ),
            Some((13, 20))
        );
    }

    #[test]
    fn finds_sequence_items() {
        assert_eq!(
            locate(
                DOC,
                &[k("subjects"), k("bank-a"), k("roles"), Seg::Index(1)]
            ),
            Some((3, 66))
        );
        assert_eq!(
            locate(
                DOC,
                &[k("subjects"), k("officer"), k("roles"), Seg::Index(0)]
            ),
            Some((8, 9))
        );
    }

    #[test]
    fn answers_none_when_absent() {
        assert_eq!(locate(DOC, &[k("nope")]), None);
        assert_eq!(
            locate(
                DOC,
                &[k("subjects"), k("officer"), k("roles"), Seg::Index(3)]
            ),
            None
        );
    }
}

//! A batch through an edge: the edge checks each line, sends the ledger node only the lines that
//! passed, and gives the client one answer in which every line has its outcome under its own number,
//! exactly as a single node's batch answer would (`line` counts the non-blank lines from 1).

use serde_json::Value;

use crate::ingress::api::batch_refusal;
use crate::pipeline::PipelineError;

/// A client's batch split by the edge's check.
#[derive(Debug, Default)]
pub(super) struct Split {
    /// For each line that passed (and is forwarded), its index in the client's batch.
    positions: Vec<usize>,
    /// The refused lines' answers, by index in the client's batch.
    refused: Vec<(usize, Value)>,
}

impl Split {
    /// Checks each line.
    pub(super) fn of(lines: &[&[u8]], check: impl Fn(&[u8]) -> Result<(), PipelineError>) -> Split {
        let mut split = Split::default();
        for (i, line) in lines.iter().enumerate() {
            match check(line) {
                Ok(()) => split.positions.push(i),
                Err(e) => split.refused.push((i, batch_refusal(i + 1, &e))),
            }
        }
        split
    }

    /// The lines that passed, joined by newlines: what the ledger node gets when some were refused
    /// (when none was, the client's body goes as it is, not copied again).
    pub(super) fn forward(&self, lines: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, i) in self.positions.iter().enumerate() {
            if k > 0 {
                out.push(b'\n');
            }
            out.extend_from_slice(lines.get(*i).copied().unwrap_or_default());
        }
        out
    }

    /// Whether any line is left to forward.
    pub(super) fn forwards_any(&self) -> bool {
        !self.positions.is_empty()
    }

    /// Whether every line passed (the client's body can go as it is).
    pub(super) fn all_passed(&self) -> bool {
        self.refused.is_empty()
    }

    /// The client's answer: the ledger node's answer lines (`answer`, NDJSON, for the forwarded
    /// lines) renumbered to their places, and the refusals, in the client's order. `None` if the
    /// ledger node's answer does not have one well-formed line per forwarded line.
    pub(super) fn merge(self, answer: &[u8]) -> Option<Vec<u8>> {
        let mut lines: Vec<(usize, Value)> = self.refused;
        let mut answered = 0;
        for raw in answer.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut v: Value = serde_json::from_slice(raw).ok()?;
            let n = usize::try_from(v.get("line")?.as_u64()?).ok()?;
            let at = *self.positions.get(n.checked_sub(1)?)?;
            *v.get_mut("line")? = Value::from(at + 1);
            lines.push((at, v));
            answered += 1;
        }
        if answered != self.positions.len() {
            return None;
        }
        lines.sort_by_key(|(at, _)| *at);
        let mut out = Vec::with_capacity(answer.len() + lines.len() * 128);
        for (_, v) in lines {
            // Writing a `Value` into a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut out, &v);
            out.push(b'\n');
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse_odd(line: &[u8]) -> Result<(), PipelineError> {
        if line.first().is_some_and(|b| (b - b'0') % 2 == 1) {
            Err(PipelineError::Record(policies::RecordError {
                code: policies::RecordErrorCode::InvalidField,
                path: Some("x".into()),
                reason: "odd".into(),
            }))
        } else {
            Ok(())
        }
    }

    #[test]
    fn the_ledger_nodes_lines_and_the_refusals_come_back_in_the_clients_order() {
        let lines: Vec<&[u8]> = vec![b"0", b"1", b"2", b"3", b"4"];
        let split = Split::of(&lines, refuse_odd);
        assert_eq!(split.forward(&lines), b"0\n2\n4");
        assert!(split.forwards_any() && !split.all_passed());
        let answer = b"{\"line\":1,\"status\":201}\n{\"line\":2,\"status\":200}\n{\"line\":3,\"status\":201}\n";
        let merged = String::from_utf8(split.merge(answer).unwrap()).unwrap();
        let got: Vec<(u64, u64)> = merged
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| (v["line"].as_u64().unwrap(), v["status"].as_u64().unwrap()))
            .collect();
        assert_eq!(got, vec![(1, 201), (2, 422), (3, 200), (4, 422), (5, 201)]);
    }

    #[test]
    fn an_answer_that_does_not_match_the_forwarded_lines_is_refused() {
        let lines: Vec<&[u8]> = vec![b"0", b"2"];
        let short = Split::of(&lines, refuse_odd).merge(b"{\"line\":1}\n");
        assert!(short.is_none());
        let beyond = Split::of(&lines, refuse_odd).merge(b"{\"line\":1}\n{\"line\":3}\n");
        assert!(beyond.is_none());
        let garbage = Split::of(&lines, refuse_odd).merge(b"not json\n");
        assert!(garbage.is_none());
        // Nothing forwarded: the refusals alone.
        let none = Split::of(&[b"1".as_slice()], refuse_odd);
        assert!(!none.forwards_any());
        let alone: Value = serde_json::from_slice(&none.merge(b"").unwrap()).unwrap();
        assert_eq!(
            (alone["line"].as_u64(), alone["status"].as_u64()),
            (Some(1), Some(422))
        );
    }
}

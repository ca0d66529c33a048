//! The fuzz targets' bodies, one function per decoder of untrusted or on-disk bytes (feature
//! `fuzzing`). `fuzz/fuzz_targets/*.rs` call them under libFuzzer (`cargo +nightly fuzz run NAME`),
//! and `tests/tests/fuzz_corpora.rs` replays every committed corpus file through them on the stable
//! toolchain, so a decoder that starts panicking on a known input fails CI.
//!
//! Each returns normally for any input; a panic is the finding. Where a decoder has an encoder, what
//! decodes must encode back to the same bytes (checked with `assert!`, which the fuzzer reports).

#![allow(clippy::panic, clippy::missing_panics_doc)] // a failed round trip is a finding to report

use std::path::Path;

use crate::ledger::{
    Bundle, Ed25519NoteSigner, Located, NoteSigner as _, NoteVerifier, SignedCheckpoint,
    encode_bundle, open_note,
};

/// The origin of the corpus's checkpoints.
pub const FUZZ_ORIGIN: &str = "fuzz.ledgergate.local/log";

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target, by name (the names of `fuzz/fuzz_targets/*.rs` and of `fuzz/corpus/*`).
pub const TARGETS: [(&str, Target); 16] = [
    ("json_record", json_record),
    ("batch_lines", batch_lines),
    ("policy_yaml", policy_yaml),
    ("ledger_bundle", ledger_bundle),
    ("ledger_attachment", ledger_attachment),
    ("checkpoint_note", checkpoint_note),
    ("vault_record", vault_record),
    ("key_record", key_record),
    ("key_envelope", key_envelope),
    ("subject_key_compact", subject_key_compact),
    ("checkpoint_key_history", checkpoint_key_history),
    ("channel_frames", channel_frames),
    ("channel_rpc", channel_rpc),
    ("snapshot_image", snapshot_image),
    ("audit_entry", audit_entry),
    ("quarantine_list", quarantine_list),
];

/// A ledger entry read as an audit entry: by the consortium's attribution check (on entries another
/// member proposed) and by the audit listing's filter. An entry the check lets through that reads as
/// an audit entry names the member that proposed it.
pub fn audit_entry(data: &[u8]) {
    let accepted = crate::consortium::audit_entry::refusal(&[data.to_vec()], Some("m1")).is_none();
    if accepted
        && let Some(typed) = crate::audit::typed(data)
        && typed
            .kind
            .as_deref()
            .is_some_and(|k| k.starts_with(crate::audit::TYPE_PREFIX))
    {
        assert_eq!(
            typed.member.as_deref(),
            Some("m1"),
            "an unattributed audit entry"
        );
    }
    let filter = crate::audit::listing::Filter {
        actor: Some("officer".into()),
        kind: Some("key".into()),
        since: Some("2026-01-01T00:00:00Z".into()),
        until: None,
    }
    .parse()
    .unwrap_or_default();
    if let Some(entry) = filter.keeps(data) {
        assert!(
            crate::audit::is_audit(data),
            "a record listed as an audit entry"
        );
        assert_eq!(
            entry.get("actor").and_then(serde_json::Value::as_str),
            Some("officer")
        );
    }
}

/// The quarantine list as read from `DATA/risk/quarantine.json`: read whole or refused.
pub fn quarantine_list(data: &[u8]) {
    if let Ok(list) = crate::risk::quarantine::parse(data) {
        assert!(list.iter().all(|(k, q)| *k == q.subject));
    }
}

/// A forwarded request or response from the other node: decodes or is refused, and what decodes
/// encodes back to a message that decodes to the same.
pub fn channel_rpc(data: &[u8]) {
    use crate::channel::rpc::Message;
    if let Ok(message) = Message::decode(data.to_vec()) {
        let again = message.encode().map(Message::decode);
        assert!(
            matches!(again, Ok(Ok(ref m)) if *m == message),
            "rpc round trip"
        );
    }
}

/// A Raft snapshot's image, as a member receives it from another and reads it back from disk: every
/// length bounded; an image read to its end re-encodes to the same bytes.
pub fn snapshot_image(data: &[u8]) {
    use crate::consortium::snapshot::{ImageReader, encode_image};
    let Ok(mut reader) = ImageReader::new(data) else {
        return;
    };
    let mut entries = Vec::new();
    loop {
        match reader.next_page(7) {
            Ok(page) if page.is_empty() => break,
            Ok(page) => entries.extend(page),
            Err(_) => return,
        }
    }
    assert_eq!(
        encode_image(&entries).ok().as_deref(),
        Some(data),
        "snapshot image round trip"
    );
}

/// The record parser the API applies to every submitted body (bounded size and depth).
pub fn json_record(data: &[u8]) {
    let limits = policies::JsonLimits {
        max_bytes: 64 * 1024,
        max_depth: 32,
    };
    let Ok(record) = policies::parse_json(data, limits) else {
        return;
    };
    let mut record = record.get("fields").cloned().unwrap_or(record);
    // Numbers: canonical forms are fixed points and survive being written and read again.
    let Some(rt) = numbers_policy().and_then(|p| p.record_types().get("loan_application")) else {
        return;
    };
    if policies::canonicalize_numbers(rt, &mut record).is_ok() {
        let text = record.to_string();
        let mut again = policies::parse_json(text.as_bytes(), limits).unwrap_or_default();
        assert!(policies::canonicalize_numbers(rt, &mut again).is_ok());
        assert_eq!(
            again.to_string(),
            text,
            "canonical numbers are a fixed point"
        );
    }
}

#[cfg(test)]
#[test]
fn the_number_policy_loads() {
    assert!(numbers_policy().is_some_and(|p| p.record_types().contains_key("loan_application")));
    json_record(br#"{"fields": {"amount": 1.0, "term_months": 1e1, "salary": 0.1, "rates": [1e21, 2.50], "terms": [3.0], "nested": {"n": -0.0, "i": 7e0}}}"#);
}

/// A record type with numbers of both types at the top, nested and in arrays, loaded once.
fn numbers_policy() -> Option<&'static policies::PolicySet> {
    static POLICY: std::sync::OnceLock<Option<policies::PolicySet>> = std::sync::OnceLock::new();
    const YAML: &str = r"
version: 1
subjects:
  p: { match: { cn: p }, roles: [provider] }
record_types:
  loan_application:
    submit: [provider]
    read: [provider]
    subject_field: id
    fields:
      id:          { type: string, required: true, transform: keep }
      amount:      { type: number, transform: keep }
      salary:      { type: number, transform: seal }
      term_months: { type: integer, transform: keep }
      rates:       { type: array, items: number, transform: keep }
      terms:       { type: array, items: integer, transform: keep }
      nested:
        type: object
        transform: keep
        fields:
          n: { type: number, transform: keep }
          i: { type: integer, transform: keep }
";
    POLICY
        .get_or_init(|| policies::PolicySet::from_yaml(Path::new("numbers.yaml"), YAML).ok())
        .as_ref()
}

/// The NDJSON batch reader, then the record parser on each line.
pub fn batch_lines(data: &[u8]) {
    if let Ok(lines) = crate::ingress::api::batch_lines(data) {
        assert!(lines.len() <= crate::ingress::api::MAX_BATCH_LINES);
        for line in lines {
            json_record(line);
        }
    }
}

/// Policy loading from YAML text, with its located errors.
pub fn policy_yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(errors) = policies::PolicySet::from_yaml(Path::new("fuzz.yaml"), text)
    {
        // Rendering every error must not panic either (positions, snippets).
        let _ = errors.to_string();
    }
}

/// A stored bundle of ledger entries: every bound checked; what parses re-encodes to the same bytes.
pub fn ledger_bundle(data: &[u8]) {
    if let Some(b) = Bundle::parse(data) {
        let records: Vec<_> = (0..b.len()).filter_map(|j| b.record(j)).collect();
        assert_eq!(
            records.len(),
            b.len(),
            "a parsed bundle's record is unreadable"
        );
        assert_eq!(encode_bundle(&records), data, "bundle round trip");
    }
    if let Some(b) = Bundle::parse_header(data) {
        for j in 0..b.len().min(1024) {
            let _ = b.record(j);
        }
    }
}

/// Where an attached entry landed (the vault's locator in the ledger store).
pub fn ledger_attachment(data: &[u8]) {
    if let Some(located) = Located::decode(data) {
        // `encode` is the store's own writer: what it reads back must be what it wrote.
        assert_eq!(located.encode(), data, "locator round trip");
    }
}

/// A signed note and checkpoint from a client or the store, against a fixed key; and key text.
pub fn checkpoint_note(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The key the corpus's signed notes were made with (seed 7s): valid signatures reach the
    // checkpoint body parser, not only the signature check.
    let trusted: Vec<NoteVerifier> = Ed25519NoteSigner::from_seed(FUZZ_ORIGIN, &[7; 32])
        .map(|s| s.verifier().clone())
        .into_iter()
        .collect();
    let _ = open_note(text, &trusted);
    let _ = SignedCheckpoint::open(text, &trusted);
    let _ = NoteVerifier::from_vkey(text);
    // Cosignatures by two members (seeds 1s and 2s), as a consortium client checks them.
    let members: Vec<crate::ledger::Cosigner> = [1u8, 2]
        .iter()
        .filter_map(|i| {
            let key = ed25519_dalek::SigningKey::from_bytes(&[*i; 32]).verifying_key();
            crate::ledger::Cosigner::new(&format!("member-{i}"), key).ok()
        })
        .collect();
    if let Some(log) = trusted.first() {
        let _ = crate::ledger::verify_quorum(text, log, &members, 1);
    }
}

/// The vault's submission record (request MAC and sealed values) as stored beside an entry.
pub fn vault_record(data: &[u8]) {
    let _ = crate::vault::decode(data);
}

/// A key record as stored in the key store (JSON), and the lifecycle questions asked of it; and the
/// store's KEK parameters (JSON too).
pub fn key_record(data: &[u8]) {
    // The store's KEK parameters (passphrase, key file or token labels) are JSON beside the keys.
    if let Ok(params) = serde_json::from_slice::<keymgr::KdfParams>(data) {
        let _ = serde_json::to_vec(&params);
    }
    if let Ok(record) = serde_json::from_slice::<keymgr::KeyRecord>(data) {
        for v in record.versions.iter().map(|v| v.version).take(64) {
            let _ = record.trusted_at(v, 0);
            let _ = record.trusted_at(v, i64::MAX);
        }
        let _ = serde_json::to_vec(&record);
    }
}

/// A wrapped key (the KEK envelope: version, nonce, ciphertext and tag), under a fixed KEK.
pub fn key_envelope(data: &[u8]) {
    let secret = keymgr::Secret::new(vec![7; 32]);
    if let Some(kek) = keymgr::Kek::from_secret(&secret) {
        let _ = kek.unwrap(data, b"ledgergate-key/1 fuzz");
    }
}

/// A data-subject key in the key store's compact form: the 16-byte hash, then the value.
pub fn subject_key_compact(data: &[u8]) {
    let Some((hash, value)) = data.split_first_chunk::<16>() else {
        return;
    };
    if let Ok(record) = keymgr::compact::decode(hash, value) {
        let encoded = keymgr::compact::encode(&record);
        assert!(
            encoded.is_some_and(|(h, v)| h == *hash && v.as_slice() == value),
            "a decoded compact record encodes back to its bytes"
        );
    }
}

/// A checkpoint key's history as the ledger store keeps it (and `GET /v1/checkpoint/keys` serves it).
pub fn checkpoint_key_history(data: &[u8]) {
    if let Ok(key) = serde_json::from_slice::<crate::ledger::CheckpointKey>(data) {
        let _ = key.trusted_at(None);
        let _ = key.trusted_at(Some(i64::MAX));
        let json = serde_json::to_vec(&key).unwrap_or_default();
        let again = serde_json::from_slice::<crate::ledger::CheckpointKey>(&json);
        assert!(again.is_ok_and(|k| k == key), "the history round-trips");
    }
}

/// A channel peer's bytes: split into frames and fed to a session, either a fresh responder (first
/// byte even: handshake parsing) or one whose handshake with a well-behaved initiator finished (odd:
/// decryption, message kinds, reassembly, rekey messages). Whatever arrives, the session answers or
/// closes; it never panics, and once closed it stays closed.
pub fn channel_frames(data: &[u8]) {
    use crate::channel::frame::FrameReader;
    use crate::channel::{Config, Output, Session, Timers};
    use std::sync::Arc;
    use std::time::Duration;
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let config = |seed: u8| {
        Config::new(
            zeroize::Zeroizing::new([seed; 32]),
            &ed25519_dalek::SigningKey::from_bytes(&[seed.wrapping_add(1); 32]),
            FUZZ_ORIGIN,
            Arc::new(|_: &crate::channel::Identity| true),
        )
        .map(|c| Arc::new(c.with_timers(Timers::default()).with_max_message(1 << 20)))
    };
    let now = Duration::from_secs(1);
    let (Ok(responder_config), Ok(initiator_config)) = (config(2), config(1)) else {
        return;
    };
    let Ok(mut responder) = Session::responder(responder_config, now) else {
        return;
    };
    if mode % 2 == 1 {
        // A real handshake first, so that the input reaches the transport.
        let Ok((mut initiator, first)) = Session::initiator(initiator_config, now) else {
            return;
        };
        let mut to_responder = first;
        for _ in 0..3 {
            let mut to_initiator = Vec::new();
            for out in to_responder.drain(..) {
                if let Output::Transmit(bytes) = out {
                    let mut r = FrameReader::default();
                    r.push(&bytes);
                    while let Ok(Some((e, mut m))) = r.next_frame() {
                        to_initiator.extend(responder.receive(now, e, &mut m).unwrap_or_default());
                    }
                }
            }
            for out in to_initiator {
                if let Output::Transmit(bytes) = out {
                    let mut r = FrameReader::default();
                    r.push(&bytes);
                    while let Ok(Some((e, mut m))) = r.next_frame() {
                        to_responder.extend(initiator.receive(now, e, &mut m).unwrap_or_default());
                    }
                }
            }
        }
        assert!(responder.is_open(), "the fuzz handshake did not finish");
    }
    let mut reader = FrameReader::default();
    reader.push(rest);
    let mut closed = false;
    while let Ok(Some((epoch, mut message))) = reader.next_frame() {
        let answer = responder.receive(now, epoch, &mut message);
        if closed {
            assert!(answer.is_err(), "a closed session took a frame");
        }
        closed |= answer.is_err();
    }
}

//! Automatic rotation: keys with a rotation period are rotated by the gateway when due, at start and
//! then periodically; each rotation is in keymgr's audit trail (actor `gateway`). A key with no usable
//! version (revoked or destroyed) is not rotated behind the officers' backs: it is reported, as are
//! keys past their maximum age that have no rotation period.

use keymgr::{KeyManager, Timestamp, UseError};

/// The actor recorded for automatic rotations.
pub const ACTOR: &str = "gateway";

/// What one pass did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Keys rotated: (name, new version).
    pub rotated: Vec<(String, u32)>,
    /// Keys that need an officer: (name, why).
    pub attention: Vec<(String, String)>,
}

/// One pass over every key at `now`.
pub fn rotate_due(keys: &KeyManager, now: Timestamp) -> Result<Pass, keymgr::Error> {
    let mut pass = Pass::default();
    for record in keys.due(now)? {
        let usable = record.usable(now);
        match (record.rotate_every, usable) {
            // Past its period, or expired while it has one: rotate.
            (Some(_), Ok(_) | Err(UseError::Expired { .. })) => {
                let rotated = keys.rotate(&record.name, now, ACTOR)?;
                pass.rotated
                    .push((record.name.clone(), rotated.primary.unwrap_or_default()));
            }
            (_, Err(UseError::NoUsableVersion(_))) => {
                pass.attention.push((
                    record.name.clone(),
                    "no usable version (revoked or destroyed); an officer must rotate it".into(),
                ));
            }
            (None, Err(e)) => pass.attention.push((record.name.clone(), e.to_string())),
            (None, Ok(_)) => {}
            (Some(_), Err(e)) => pass.attention.push((record.name.clone(), e.to_string())),
        }
    }
    for (name, version) in &pass.rotated {
        tracing::info!(key = %name, version, "rotated automatically: its rotation period had passed");
    }
    for (name, why) in &pass.attention {
        tracing::warn!(event = "key_needs_officer", key = %name, %why, "key needs an officer");
    }
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymgr::{KekSource, Purpose, RevocationReason, Secret};

    #[test]
    fn rotates_what_is_due_and_reports_what_needs_an_officer() {
        let dir = tempfile::tempdir().unwrap();
        let k = KeyManager::init(
            &dir.path().join("k"),
            &KekSource::Passphrase(Secret::new(b"p".to_vec())),
            0,
            "t",
        )
        .unwrap();
        k.create("periodic", Purpose::Pseudonym, Some(100), None, 0, "t")
            .unwrap();
        k.create("forever-ish", Purpose::Pseudonym, None, Some(50), 0, "t")
            .unwrap();
        k.create("revoked", Purpose::Pseudonym, Some(100), None, 0, "t")
            .unwrap();
        k.revoke("revoked", 1, RevocationReason::Compromised, None, 10, "t")
            .unwrap();
        assert_eq!(rotate_due(&k, 20).unwrap().rotated, vec![]);
        let pass = rotate_due(&k, 100).unwrap();
        assert_eq!(pass.rotated, vec![("periodic".to_owned(), 2)]);
        let names: Vec<&str> = pass.attention.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["forever-ish", "revoked"]);
        assert_eq!(
            k.show("revoked").unwrap().primary,
            None,
            "a revoked key is left to the officers"
        );
        assert_eq!(k.audit(0, 1000).unwrap().last().unwrap().actor, ACTOR);
        assert_eq!(
            rotate_due(&k, 150).unwrap().rotated,
            vec![],
            "not again before the next period"
        );
    }
}

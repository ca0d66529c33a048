//! `gateway init --role edge --ledger DIR`: an edge for a development ledger node made by `gateway
//! init`, in one step. The edge gets the ledger node's development PKI and policies, channel keys of
//! its own (a 0600 file; no key store, no KEK, no data directory), and a configuration pointing at the
//! ledger node's channel; the ledger node's configuration gets a channel listener that admits exactly
//! this edge. Both listen on loopback; the ledger node must be stopped (its key store is read for its
//! identity).

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use keymgr::Secret;

use crate::channel::Identity;
use crate::files::{FileError, private_dir, write_private, write_public};
use crate::init::InitError;

/// Where the development pair talks: the ledger node's channel listener.
pub const DEV_CHANNEL: &str = "127.0.0.1:7443";
/// The edge's provider listener and metrics (the ledger node keeps 8443 and 9464).
pub const DEV_EDGE_LISTEN: &str = "127.0.0.1:8444";
/// The edge's metrics listener.
pub const DEV_EDGE_METRICS: &str = "127.0.0.1:9465";

/// What `init_edge` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeDir {
    /// The edge's directory.
    pub dir: PathBuf,
    /// The edge's channel identity.
    pub identity: Identity,
    /// The ledger node's identity.
    pub ledger_identity: Identity,
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), InitError> {
    private_dir(to)?;
    let listing = std::fs::read_dir(from).map_err(|e| FileError {
        path: from.to_owned(),
        why: format!("cannot list it: {e}"),
    })?;
    for entry in listing.flatten() {
        let bytes = std::fs::read(entry.path()).map_err(|e| FileError {
            path: entry.path(),
            why: format!("cannot read it: {e}"),
        })?;
        let target = to.join(entry.file_name());
        // Private keys stay private; certificates, CRLs and policies are public.
        if entry.path().extension().is_some_and(|e| e == "key") {
            write_private(&target, &bytes)?;
        } else {
            write_public(&target, &bytes)?;
        }
    }
    Ok(())
}

/// Makes an edge at `dir` for the development ledger node at `ledger` (made by `gateway init`).
pub fn init_edge(dir: &Path, ledger: &Path) -> Result<EdgeDir, InitError> {
    let ledger_config = ledger.join("gateway.yaml");
    let text = std::fs::read_to_string(&ledger_config).map_err(|e| FileError {
        path: ledger_config.clone(),
        why: format!("cannot read it (make the ledger node first: gateway init --dir …): {e}"),
    })?;
    if text.lines().any(|l| l.starts_with("channel:")) {
        return Err(InitError::Conflict(format!(
            "{} already has a channel section; add the edge to its peers by hand",
            ledger_config.display()
        )));
    }
    if dir.exists() {
        return Err(InitError::Partial(dir.to_owned()));
    }
    let ledger_identity = crate::init::read_node_identity(ledger)?;
    private_dir(dir)?;
    copy_dir(&ledger.join("pki"), &dir.join("pki"))?;
    copy_dir(&ledger.join("policies"), &dir.join("policies"))?;
    let seed = Secret::random(32).map_err(keymgr::Error::from)?;
    let static_key = Secret::random(32).map_err(keymgr::Error::from)?;
    let seed_bytes: [u8; 32] = seed
        .expose()
        .try_into()
        .map_err(|_| keymgr::Error::StoreCorrupt("random seed".into()))?;
    let identity = Identity::of(&SigningKey::from_bytes(&seed_bytes));
    let keys = zeroize::Zeroizing::new(format!(
        "{{\"identity\":\"{}\",\"static\":\"{}\"}}\n",
        hex::encode(seed.expose()),
        hex::encode(static_key.expose())
    ));
    write_private(&dir.join("channel.key"), keys.as_bytes())?;
    let config = format!(
        "# An edge (gateway init --role edge): providers connect here; records go to the ledger node over\n\
         # the channel. It holds no data directory and no KEK. Every option: deploy/gateway.yaml.\n\
         listen: {DEV_EDGE_LISTEN}\n\
         metrics_listen: {DEV_EDGE_METRICS}\n\
         tls:\n  cert: pki/server.pem\n  key: pki/server.key\n  client_ca: pki/ca.pem\n  crls: [pki/crl.pem]\n\
         policies: policies\n\
         chain:\n  remote:\n    address: \"{DEV_CHANNEL}\"\n    identity: \"{ledger_identity}\"\n    keys: channel.key\n"
    );
    write_public(&dir.join("gateway.yaml"), config.as_bytes())?;
    // The ledger node admits exactly this edge.
    let mut ledger_text = text;
    if !ledger_text.ends_with('\n') {
        ledger_text.push('\n');
    }
    ledger_text.push_str(&format!(
        "\n# The channel for its edge (added by gateway init --role edge).\n\
         channel:\n  listen: \"{DEV_CHANNEL}\"\n  peers:\n    - {{ name: edge, identity: \"{identity}\" }}\n"
    ));
    crate::files::replace_public(&ledger_config, ledger_text.as_bytes())?;
    Ok(EdgeDir {
        dir: dir.to_owned(),
        identity,
        ledger_identity,
    })
}

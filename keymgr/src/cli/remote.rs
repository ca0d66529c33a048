//! The remote backend: a running gateway's admin API, over HTTPS with the officer's client certificate.
//! The node keeps its key store locked while it runs; this is how officers act on it meanwhile.

use std::path::Path;

use keymgr::admin_client::AdminClient;
use keymgr::{Backend, Command, Error, Outcome};

pub(crate) struct Remote(AdminClient);

impl Remote {
    /// `url` is `https://HOST[:PORT]` (default port 8443).
    pub(crate) fn new(url: &str, cert: &Path, key: &Path, cacert: &Path) -> Result<Remote, Error> {
        AdminClient::new(url, cert, key, cacert).map(Remote)
    }
}

impl Remote {
    /// A page of the node's audit trail in its ledger (`GET /admin/v1/audit?query`).
    pub(crate) fn ledger_audit(&self, query: &str) -> Result<serde_json::Value, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Unreachable(e.to_string()))?;
        rt.block_on(
            self.0
                .json("GET", &format!("/admin/v1/audit?{query}"), None),
        )
    }
}

impl Backend for Remote {
    fn execute(&mut self, command: Command, _actor: &str) -> Result<Outcome, Error> {
        // The gateway records the officer named by the client certificate, not a claimed --actor.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Unreachable(e.to_string()))?;
        let body = serde_json::to_vec(&command).map_err(|e| Error::Unreachable(e.to_string()))?;
        rt.block_on(self.0.json("POST", "/admin/v1/keys", Some(body)))
    }
}

//! What every officer command against a running node needs: the node's admin API and the officer's
//! credentials, a client over them, and a runtime to drive it.

use std::path::PathBuf;

use clap::Args;
use keymgr::admin_client::AdminClient;

use super::CliError;

/// A running node's admin API and the officer's credentials.
#[derive(Debug, Args)]
pub(crate) struct OfficerArgs {
    /// A running node's admin API: https://HOST[:PORT].
    #[arg(long)]
    gateway: String,
    /// The officer's client certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The CA that signed the node's server certificate (PEM).
    #[arg(long)]
    cacert: PathBuf,
}

impl OfficerArgs {
    /// A client over these credentials and a runtime to run it on; `what` names the command in
    /// errors.
    pub(crate) fn connect(
        &self,
        what: &'static str,
    ) -> Result<(AdminClient, tokio::runtime::Runtime), CliError> {
        let client = AdminClient::new(&self.gateway, &self.cert, &self.key, &self.cacert)
            .map_err(|e| CliError::new(what, format!("officer credentials: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::new(what, format!("runtime: {e}")))?;
        Ok((client, rt))
    }
}

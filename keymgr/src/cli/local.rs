//! The local backend: a key store on this machine, opened while the node is stopped.

use std::path::Path;

use keymgr::{Backend, Command, Error, KekSource, KeyManager, Outcome};

/// Now, in Unix seconds: the library takes time as an argument; the CLI reads the clock.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) struct Local {
    manager: KeyManager,
}

impl Local {
    pub(crate) fn open(store: &Path, source: &KekSource) -> Result<Local, Error> {
        Ok(Local {
            manager: KeyManager::open(store, source)?,
        })
    }
}

impl Backend for Local {
    fn execute(&mut self, command: Command, actor: &str) -> Result<Outcome, Error> {
        keymgr::execute(&self.manager, command, now(), actor)
    }
}

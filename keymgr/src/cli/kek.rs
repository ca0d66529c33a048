//! Getting the key-encryption key from the officer: a PKCS#11 token, a key file,
//! $LEDGERGATE_KEK_PASSPHRASE, or a prompt on the terminal that does not echo.

use std::path::{Path, PathBuf};

use keymgr::{Error, KekSource, PinSource, Pkcs11Config, Secret};

/// The KEK in a PKCS#11 token (every option global, so it may follow the verb).
#[derive(Debug, clap::Args)]
pub(crate) struct Pkcs11Args {
    /// The KEK is an AES key in a PKCS#11 token, through this module (e.g.
    /// /usr/lib/softhsm/libsofthsm2.so).
    #[arg(long, global = true, value_name = "FILE", requires = "pkcs11_token")]
    pub(crate) pkcs11_module: Option<PathBuf>,
    /// With --pkcs11-module: the token's label.
    #[arg(long, global = true, value_name = "LABEL")]
    pkcs11_token: Option<String>,
    /// With --pkcs11-module: the KEK's label in the token (made by `init` if missing).
    #[arg(
        long,
        global = true,
        value_name = "LABEL",
        default_value = "ledgergate-kek"
    )]
    pkcs11_key: String,
    /// With --pkcs11-module: read the user PIN from this file (mode 0600) instead of
    /// $LEDGERGATE_PKCS11_PIN.
    #[arg(long, global = true, value_name = "FILE")]
    pkcs11_pin_file: Option<PathBuf>,
}

impl Pkcs11Args {
    /// The token's configuration, if one was named.
    pub(crate) fn config(&self) -> Option<KekSource> {
        let (module, token) = (self.pkcs11_module.as_ref()?, self.pkcs11_token.as_ref()?);
        let pin = match &self.pkcs11_pin_file {
            Some(f) => PinSource::File(f.clone()),
            None => PinSource::Env("LEDGERGATE_PKCS11_PIN".into()),
        };
        Some(KekSource::Pkcs11(Pkcs11Config {
            module: module.clone(),
            token_label: token.clone(),
            key_label: self.pkcs11_key.clone(),
            pin,
        }))
    }
}

fn from_env(var: &str) -> Option<Secret> {
    std::env::var(var)
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| Secret::new(p.into_bytes()))
}

fn prompt(text: &str) -> Result<Secret, Error> {
    // rpassword reads the terminal itself (not stdin), so a pipe never feeds it a passphrase by accident.
    rpassword::prompt_password(text)
        .map(|p| Secret::new(p.into_bytes()))
        .map_err(|_| Error::NoKek)
}

fn prompt_twice(text: &str) -> Result<Secret, Error> {
    let first = prompt(text)?;
    let again = prompt("Repeat it: ")?;
    if first != again {
        return Err(Error::InvalidArgument("the passphrases differ".into()));
    }
    if first.len() < 12 {
        return Err(Error::InvalidArgument(
            "use a passphrase of at least 12 characters".into(),
        ));
    }
    Ok(first)
}

/// The KEK of an existing store: the token, if one is named.
pub(crate) fn existing(file: Option<&Path>, token: Option<KekSource>) -> Result<KekSource, Error> {
    if let Some(token) = token {
        return Ok(token);
    }
    if let Some(f) = file {
        return Ok(KekSource::File(f.to_owned()));
    }
    match from_env("LEDGERGATE_KEK_PASSPHRASE") {
        Some(p) => Ok(KekSource::Passphrase(p)),
        None => prompt("Key store passphrase: ").map(KekSource::Passphrase),
    }
}

/// A new KEK: a key file (made if missing), or a new passphrase from `env` or asked twice.
fn new_kek(file: Option<&Path>, env: &str, question: &str) -> Result<KekSource, Error> {
    if let Some(f) = file {
        if !f.exists() {
            keymgr::create_key_file(f)?;
        }
        return Ok(KekSource::File(f.to_owned()));
    }
    match from_env(env) {
        Some(p) => Ok(KekSource::Passphrase(p)),
        None => prompt_twice(question).map(KekSource::Passphrase),
    }
}

/// The KEK for a new store.
pub(crate) fn for_init(file: Option<&Path>) -> Result<KekSource, Error> {
    new_kek(
        file,
        "LEDGERGATE_KEK_PASSPHRASE",
        "New key store passphrase: ",
    )
}

/// The new KEK for `change-passphrase`.
pub(crate) fn for_change(file: Option<&Path>) -> Result<KekSource, Error> {
    new_kek(file, "LEDGERGATE_NEW_KEK_PASSPHRASE", "New passphrase: ")
}

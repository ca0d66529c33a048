//! Getting the key-encryption key from the officer: a key file, $LEDGERGATE_KEK_PASSPHRASE, or a prompt
//! on the terminal that does not echo.

use std::path::Path;

use keymgr::{Error, KekSource, Secret};

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

/// The KEK of an existing store.
pub(crate) fn existing(file: Option<&Path>) -> Result<KekSource, Error> {
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

//! A key-encryption key held in a PKCS#11 token (an HSM; SoftHSM2 in development and tests): a
//! non-extractable, sensitive AES-256 key that never leaves the token. Every wrap and unwrap is an
//! AES-GCM operation inside the token with the same AAD the software KEK binds, so the key store on
//! disk is useless without the token and its PIN.
//!
//! The connection (library, slot, session, login, key handle) is made on first use and made again
//! after any failure that is not the ciphertext's fault: a token pulled out and put back, a crashed
//! HSM daemon, a network HSM that restarted. Until it returns, every operation fails with
//! [`Error::TokenUnavailable`] (the gateway's `503 unavailable`), never half-done.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use crate::Error;
use crate::secret::Secret;

/// Format byte of a blob wrapped in a token: `0x02 ‖ IV (12) ‖ ciphertext ‖ tag (16)` (AES-256-GCM).
pub(crate) const WRAP_TOKEN_V1: u8 = 2;
const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;
const TAG_LEN: usize = 16;

/// Where the token's user PIN comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file holding the PIN (mode 0600; trailing newline ignored).
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
    /// The PIN itself (read already by the caller).
    Given(Secret),
}

impl std::fmt::Debug for PinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinSource::File(p) => f.debug_tuple("File").field(p).finish(),
            PinSource::Env(v) => f.debug_tuple("Env").field(v).finish(),
            PinSource::Given(_) => f.write_str("Given(..)"),
        }
    }
}

/// Which token and key hold the KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The AES key's label (`CKA_LABEL`) in that token.
    pub key_label: String,
    /// The user PIN.
    pub pin: PinSource,
}

impl PinSource {
    fn read(&self) -> Result<Secret, Error> {
        let bad = |why: String| Error::Token(format!("PIN: {why}"));
        let text = match self {
            PinSource::Given(pin) => return Ok(pin.clone()),
            PinSource::Env(var) => zeroize::Zeroizing::new(
                std::env::var(var).map_err(|_| bad(format!("${var} is not set")))?,
            ),
            PinSource::File(path) => {
                crate::durable::check_private(path)
                    .map_err(|e| bad(format!("{}: {e}", path.display())))?;
                zeroize::Zeroizing::new(
                    std::fs::read_to_string(path)
                        .map_err(|e| bad(format!("{}: {e}", path.display())))?,
                )
            }
        };
        let pin = text.trim_end_matches(['\r', '\n']);
        if pin.is_empty() {
            return Err(bad("empty".into()));
        }
        Ok(Secret::new(pin.as_bytes().to_vec()))
    }
}

/// Loaded modules, one per path for the life of the process: `C_Initialize` is once per process
/// and module, and unloading a module other handles still use would pull it from under them. With
/// each, when it was last initialised.
type Modules = HashMap<PathBuf, (Pkcs11, std::time::Instant)>;

fn modules() -> std::sync::MutexGuard<'static, Modules> {
    static MODULES: OnceLock<Mutex<Modules>> = OnceLock::new();
    MODULES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn initialize(path: &Path, m: &Pkcs11) -> Result<(), Error> {
    match m.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(e) => Err(Error::TokenUnavailable(format!(
            "PKCS#11 module {} failed to initialise: {}",
            path.display(),
            short(&e)
        ))),
    }
}

/// The module at `path`, loaded and initialised once.
fn module(path: &Path) -> Result<Pkcs11, Error> {
    let mut modules = modules();
    if let Some((m, _)) = modules.get(path) {
        return Ok(m.clone());
    }
    let loaded = Pkcs11::new(path).map_err(|e| {
        Error::Token(format!(
            "cannot load PKCS#11 module {}: {e}",
            path.display()
        ))
    })?;
    initialize(path, &loaded)?;
    modules.insert(path.to_owned(), (loaded.clone(), std::time::Instant::now()));
    Ok(loaded)
}

/// Least time between two re-initialisations of a module.
const REINITIALIZE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Finalises and initialises the module again, so that it looks for its tokens afresh: some
/// modules (SoftHSM2 among them) list the tokens they found at `C_Initialize` and never see a token
/// that comes back after it was gone. Every session of the module ends; their holders connect again
/// on their next use. At most once per [`REINITIALIZE_EVERY`], so a missing token is not a loop of
/// re-initialisations. Says whether it did.
fn reinitialize(path: &Path) -> Result<bool, Error> {
    let mut modules = modules();
    let Some((m, at)) = modules.get_mut(path) else {
        return Ok(false);
    };
    if at.elapsed() < REINITIALIZE_EVERY {
        return Ok(false);
    }
    *at = std::time::Instant::now();
    // Its error (not initialised, say) changes nothing: initialising again is the point.
    let _ = m.clone().finalize();
    initialize(path, m)?;
    Ok(true)
}

/// A PKCS#11 error in a few words: the function and the return value's name (the library's own
/// text for a return value is a paragraph).
fn short(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("{function}: {rv:?}"),
        other => other.to_string(),
    }
}

/// An open session, logged in, with the KEK's handle and the signing keys found so far.
struct Connected {
    session: Session,
    key: ObjectHandle,
    /// Private signing keys by `CKA_ID`, found once per session.
    signers: HashMap<Vec<u8>, ObjectHandle>,
}

/// The DER encoding of Ed25519's object identifier (1.3.101.112, RFC 8410), as `CKA_EC_PARAMS`.
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];

/// The 32-byte public key in a `CKA_EC_POINT`: DER `OCTET STRING` (`04 20` ‖ key), as PKCS#11 3.0
/// says, or the bare key, as some modules give it.
fn ec_point(point: &[u8]) -> Option<[u8; 32]> {
    match point {
        [0x04, 0x20, key @ ..] if key.len() == 32 => key.try_into().ok(),
        key if key.len() == 32 => key.try_into().ok(),
        _ => None,
    }
}

/// The KEK in a token.
pub(crate) struct TokenKek {
    config: Pkcs11Config,
    pin: Secret,
    /// The session, used by one caller at a time; `None` after a failure: the next use connects
    /// again. One: a pool of four gained 3 % of ingest with a new subject per record, and with
    /// SoftHSM2 made sessions invalid (`CKR_SESSION_HANDLE_INVALID`) under parallel load.
    conn: Mutex<Option<Connected>>,
}

impl std::fmt::Debug for TokenKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKek")
            .field("token", &self.config.token_label)
            .field("key", &self.config.key_label)
            .finish_non_exhaustive()
    }
}

/// The attributes of a KEK made here: in the token, private, sensitive, never extractable, and
/// good for encryption and decryption only.
fn kek_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::ValueLen(32.into()),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

impl TokenKek {
    /// Connects to the token and finds the key; with `create`, makes the key when the token has
    /// none of that label. Fails with one clear sentence when the module, the token, the PIN or the
    /// key is wrong.
    pub(crate) fn open(config: &Pkcs11Config, create: bool) -> Result<TokenKek, Error> {
        let kek = TokenKek {
            pin: config.pin.read()?,
            config: config.clone(),
            conn: Mutex::new(None),
        };
        let connected = kek.connect(create)?;
        *kek.conn.lock().unwrap_or_else(PoisonError::into_inner) = Some(connected);
        Ok(kek)
    }

    fn connect(&self, create: bool) -> Result<Connected, Error> {
        let c = &self.config;
        let unavailable = |what: &str, e: &CkError| {
            Error::TokenUnavailable(format!("token `{}`: {what}: {}", c.token_label, short(e)))
        };
        let find = |ctx: &Pkcs11| -> Result<Option<cryptoki::slot::Slot>, Error> {
            let slots = ctx
                .get_slots_with_token()
                .map_err(|e| unavailable("listing slots", &e))?;
            Ok(slots.into_iter().find(|s| {
                ctx.get_token_info(*s)
                    .is_ok_and(|t| t.label().trim_end() == c.token_label)
            }))
        };
        let mut ctx = module(&c.module)?;
        let mut slot = find(&ctx);
        // Not found, or the module in a bad state (an earlier re-initialisation failed while the
        // token was gone): initialise it again, at most once a second.
        if !matches!(slot, Ok(Some(_))) && reinitialize(&c.module)? {
            ctx = module(&c.module)?;
            slot = find(&ctx);
        }
        let slot = slot?.ok_or_else(|| {
            Error::TokenUnavailable(format!(
                "no token labelled `{}` in PKCS#11 module {}",
                c.token_label,
                c.module.display()
            ))
        })?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| unavailable("opening a session", &e))?;
        let pin = std::str::from_utf8(self.pin.expose())
            .map_err(|_| Error::Token("PIN: not UTF-8".into()))?;
        match session.login(UserType::User, Some(&AuthPin::from(pin))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid, _)) => {
                return Err(Error::Token(format!(
                    "token `{}` refused the PIN (wrong PIN)",
                    c.token_label
                )));
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(Error::Token(format!(
                    "token `{}`: the user PIN is locked (too many wrong PINs); its security officer must reset it",
                    c.token_label
                )));
            }
            Err(e) => return Err(unavailable("login", &e)),
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(c.key_label.as_bytes().to_vec()),
        ];
        let found = session
            .find_objects(&template)
            .map_err(|e| unavailable("finding the key", &e))?;
        let key = match found.as_slice() {
            [key] => *key,
            [] if create => session
                .generate_key(&Mechanism::AesKeyGen, &kek_template(&c.key_label))
                .map_err(|e| unavailable("generating the key", &e))?,
            [] => {
                return Err(Error::Token(format!(
                    "token `{}` holds no AES key labelled `{}`",
                    c.token_label, c.key_label
                )));
            }
            _ => {
                return Err(Error::Token(format!(
                    "token `{}` holds {} AES keys labelled `{}`: which one is the KEK is ambiguous",
                    c.token_label,
                    found.len(),
                    c.key_label
                )));
            }
        };
        Ok(Connected {
            session,
            key,
            signers: HashMap::new(),
        })
    }

    /// Runs `op` on the connection, connecting first if needed; a failure drops the connection, so
    /// the next call starts afresh. (`op` turns the failures that are its input's fault into `Ok`.)
    fn with<T>(&self, op: impl FnOnce(&mut Connected) -> Result<T, CkError>) -> Result<T, Error> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if conn.is_none() {
            *conn = Some(self.connect(false)?);
        }
        let Some(connected) = conn.as_mut() else {
            return Err(Error::TokenUnavailable("not connected".into()));
        };
        match op(connected) {
            Ok(v) => Ok(v),
            Err(e) => {
                *conn = None;
                Err(Error::TokenUnavailable(format!(
                    "token `{}`: {}",
                    self.config.token_label,
                    short(&e)
                )))
            }
        }
    }

    /// Encrypts `secret` under the token's key, bound to `aad`.
    pub(crate) fn wrap(&self, secret: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
        let mut iv = [0u8; IV_LEN];
        getrandom::fill(&mut iv)?;
        let mut iv_for_token = iv;
        let sealed = self.with(|c| {
            let params = GcmParams::new(&mut iv_for_token, aad, TAG_BITS.into())?;
            c.session.encrypt(&Mechanism::AesGcm(params), c.key, secret)
        })?;
        let mut out = Vec::with_capacity(1 + IV_LEN + sealed.len());
        out.push(WRAP_TOKEN_V1);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a blob made by [`TokenKek::wrap`] with the same `aad`. `Ok(None)`: the blob or its
    /// binding was altered (or another key made it); `Err`: the token cannot be used now.
    pub(crate) fn unwrap(&self, blob: &[u8], aad: &[u8]) -> Result<Option<Secret>, Error> {
        let Some((&WRAP_TOKEN_V1, rest)) = blob.split_first() else {
            return Ok(None);
        };
        let Some((iv, sealed)) = rest.split_at_checked(IV_LEN) else {
            return Ok(None);
        };
        // Shorter than a tag: not a blob, no need to ask the token.
        if sealed.len() < TAG_LEN {
            return Ok(None);
        }
        let mut iv: [u8; IV_LEN] = iv.try_into().unwrap_or_default();
        let opened = self.with(|c| {
            let params = GcmParams::new(&mut iv, aad, TAG_BITS.into())?;
            match c.session.decrypt(&Mechanism::AesGcm(params), c.key, sealed) {
                Ok(plain) => Ok(Some(plain)),
                // PKCS#11's answers for a ciphertext that fails its tag: the blob's fault.
                Err(CkError::Pkcs11(
                    RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                    _,
                )) => Ok(None),
                // Any other answer may be either's: SoftHSM2 answers a wrong tag with
                // `CKR_GENERAL_ERROR`. The blob's fault if the key still opens what it seals now.
                Err(_) if opens_a_probe(c) => Ok(None),
                Err(e) => Err(e),
            }
        })?;
        Ok(opened.map(Secret::new))
    }
}

/// Whether the connection's key seals and opens a fresh probe: the token works, so a refusal
/// just before was the input's fault.
fn opens_a_probe(c: &Connected) -> bool {
    const PROBE: &[u8] = b"ledgergate-token-probe";
    let mut iv = [0u8; IV_LEN];
    if getrandom::fill(&mut iv).is_err() {
        return false;
    }
    let mut iv_open = iv;
    let mut round_trip = || -> Result<bool, CkError> {
        let sealed = c.session.encrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv, b"", TAG_BITS.into())?),
            c.key,
            PROBE,
        )?;
        let opened = c.session.decrypt(
            &Mechanism::AesGcm(GcmParams::new(&mut iv_open, b"", TAG_BITS.into())?),
            c.key,
            &sealed,
        )?;
        Ok(opened == PROBE)
    };
    round_trip().unwrap_or(false)
}

impl TokenKek {
    /// Whether `other` is in the same token of the same module.
    pub(crate) fn same_token(&self, other: &TokenKek) -> bool {
        self.config.module == other.config.module
            && self.config.token_label == other.config.token_label
    }

    /// The key and its token, for messages: "the key `k` in token `t`".
    pub(crate) fn describe(&self) -> String {
        format!(
            "the key `{}` in token `{}`",
            self.config.key_label, self.config.token_label
        )
    }

    /// Makes an Ed25519 key pair in the token, its private half sensitive and never extractable,
    /// named `label` and identified by a fresh random `CKA_ID`. Returns the id and the public key.
    pub(crate) fn generate_ed25519(&self, label: &str) -> Result<(Vec<u8>, [u8; 32]), Error> {
        let mut id = vec![0u8; 16];
        getrandom::fill(&mut id)?;
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(ED25519_OID.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Derive(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.clone()),
        ];
        let point = self.with(|c| {
            let (public, private) = c.session.generate_key_pair(
                &Mechanism::EccEdwardsKeyPairGen,
                &public_template,
                &private_template,
            )?;
            c.signers.insert(id.clone(), private);
            let attrs = c
                .session
                .get_attributes(public, &[cryptoki::object::AttributeType::EcPoint])?;
            Ok(attrs.into_iter().find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            }))
        })?;
        let public = point.as_deref().and_then(ec_point).ok_or_else(|| {
            Error::Token(format!(
                "token `{}` made an Ed25519 key whose public key it does not give",
                self.config.token_label
            ))
        })?;
        Ok((id, public))
    }

    /// An Ed25519 signature (pure EdDSA) over `msg` by the private key `id`, made in the token.
    pub(crate) fn sign_ed25519(&self, id: &[u8], msg: &[u8]) -> Result<[u8; 64], Error> {
        let missing = || {
            Error::StoreCorrupt(format!(
                "the token holds no private key with id {}",
                hex::encode(id)
            ))
        };
        let signature = self.with(|c| {
            let key = match c.signers.get(id) {
                Some(k) => Some(*k),
                None => {
                    let found = c.session.find_objects(&[
                        Attribute::Class(ObjectClass::PRIVATE_KEY),
                        Attribute::Id(id.to_vec()),
                    ])?;
                    let first = found.first().copied();
                    if let Some(k) = first {
                        c.signers.insert(id.to_vec(), k);
                    }
                    first
                }
            };
            let Some(key) = key else {
                return Ok(None);
            };
            let mechanism = Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
                cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
            ));
            c.session.sign(&mechanism, key, msg).map(Some)
        })?;
        signature
            .ok_or_else(missing)?
            .try_into()
            .map_err(|_| Error::Token("the token's Ed25519 signature is not 64 bytes".into()))
    }

    /// Destroys every object (both halves of a key pair) with `CKA_ID` `id`; none left is fine.
    pub(crate) fn destroy(&self, id: &[u8]) -> Result<(), Error> {
        self.with(|c| {
            c.signers.remove(id);
            for object in c.session.find_objects(&[Attribute::Id(id.to_vec())])? {
                c.session.destroy_object(object)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests;

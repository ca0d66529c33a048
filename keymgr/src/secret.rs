//! Secret bytes: zeroized on drop, never printed.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Key material. No `Debug` or `Display` shows it; it is read only through [`Secret::expose`], and
/// wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// `len` fresh random bytes from the operating system.
    pub fn random(len: usize) -> Result<Secret, getrandom::Error> {
        let mut bytes = vec![0u8; len];
        getrandom::fill(&mut bytes)?;
        Ok(Secret(bytes))
    }

    /// The material. Keep the borrow short; never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

//! A key verifier kept beside the encrypted database.
//!
//! SQLCipher answers "file is not a database" both for a wrong key and for a
//! corrupt first page. Those must never be confused: a corrupt database is
//! moved aside and replaced, but a wrong key must leave the file untouched
//! (it may hold unsent evidence). The verifier is a salted SHA-256 of the
//! key; keys are 32 random bytes from the platform keystore, so the verifier
//! reveals nothing useful.

use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::Result;

const DOMAIN: &[u8] = b"gridwork-keycheck-v1";

#[derive(Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// No verifier stored yet (new database, or written before verifiers).
    Absent,
    Matches,
    Mismatch,
}

fn digest(salt: &[u8], key: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update((salt.len() as u32).to_le_bytes());
    hasher.update(salt);
    hasher.update(key);
    hasher.finalize().to_vec()
}

pub fn check(path: &Path, key: &[u8]) -> Result<KeyCheck> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(KeyCheck::Absent),
        Err(e) => return Err(e.into()),
    };
    // Format: "v1:<salt hex>:<digest hex>". Anything unreadable counts as
    // absent: we then fall back to the conservative wrong-key answer.
    let mut parts = text.trim().split(':');
    let (Some("v1"), Some(salt), Some(stored), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Ok(KeyCheck::Absent);
    };
    let (Ok(salt), Ok(stored)) = (hex::decode(salt), hex::decode(stored)) else {
        return Ok(KeyCheck::Absent);
    };
    Ok(if digest(&salt, key) == stored { KeyCheck::Matches } else { KeyCheck::Mismatch })
}

pub fn write(path: &Path, key: &[u8]) -> Result<()> {
    let salt: [u8; 16] = rand::random();
    let text = format!("v1:{}:{}\n", hex::encode(salt), hex::encode(digest(&salt, key)));
    super::files::write_durably(path, text.as_bytes())
}

//! The device directory: its database key, its accounts and which one is
//! current. This is what a phone's shell does around the core: fetch the key
//! from the keystore, remember who is signed in, open that account's store.
//!
//! Layout of `DIR`:
//!
//! ```text
//! DIR/device.key        generated key (development only; 64 hex digits, mode 0600)
//! DIR/current-account   "username@host:port" of the signed-in account, absent before any login
//! DIR/known-accounts    every account that ever logged in here, one per line
//! DIR/accounts/<hash>/  the core's per-account store (encrypted database, photos,
//!                       and gridwork.lock, held while a process has it open)
//! ```

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use gridwork_core::{Gridwork, GridworkConfig};

use crate::error::{CliError, CliResult, DEVICE_BUSY, DEVICE_DIR_UNUSABLE, KEY_FILE_UNREADABLE};

pub const KEY_ENV: &str = "GRIDWORK_DEVICE_KEY";
pub const KEY_FILE_NAME: &str = "device.key";
pub const CURRENT_ACCOUNT_FILE: &str = "current-account";
pub const KNOWN_ACCOUNTS_FILE: &str = "known-accounts";
/// The account used before anyone has logged in on this device.
pub const LOCAL_ACCOUNT: &str = "local";

const KEY_INVALID: &str = "database_key_invalid";

/// Where the database key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    KeyFile(PathBuf),
    Environment,
    /// `DIR/device.key`; `true` when it was created by this run.
    DeviceFile { path: PathBuf, created: bool },
}

pub struct Device {
    pub dir: PathBuf,
    key: Vec<u8>,
    pub key_source: KeySource,
}

impl Device {
    /// Make sure the directory exists and find the key: `--key-file`, else
    /// `GRIDWORK_DEVICE_KEY`, else `DIR/device.key` (created when missing).
    pub fn prepare(dir: &Path, key_file: Option<&Path>) -> CliResult<Device> {
        ensure_dir(dir)?;
        let (key, key_source) = match key_file {
            Some(path) => (read_key_file(path)?, KeySource::KeyFile(path.to_owned())),
            None => match std::env::var_os(KEY_ENV) {
                Some(value) => (key_from_env(value)?, KeySource::Environment),
                None => {
                    let path = dir.join(KEY_FILE_NAME);
                    let (key, created) = device_key(&path)?;
                    (key, KeySource::DeviceFile { path, created })
                }
            },
        };
        Ok(Device { dir: dir.to_owned(), key, key_source })
    }

    /// The account commands act on: the one recorded at login, else `local`.
    pub fn current_account(&self) -> CliResult<String> {
        match fs::read(self.dir.join(CURRENT_ACCOUNT_FILE)) {
            Ok(bytes) => {
                let text = gridwork_core::text::text_from_bytes("current-account", bytes)?;
                let account = text.trim();
                Ok(if account.is_empty() { LOCAL_ACCOUNT.to_owned() } else { account.to_owned() })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(LOCAL_ACCOUNT.to_owned()),
            Err(e) => Err(gridwork_core::Error::from(e).into()),
        }
    }

    /// Record the signed-in account (`None`: back to `local`).
    pub fn set_current_account(&self, account: Option<&str>) -> CliResult<()> {
        let path = self.dir.join(CURRENT_ACCOUNT_FILE);
        match account {
            Some(account) => {
                write_atomically(&path, format!("{account}\n").as_bytes(), 0o600)?;
                self.remember_account(account)
            }
            None => match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(gridwork_core::Error::from(e).into()),
            },
        }
    }

    /// Every account this device has held: `local` first, then those that
    /// logged in, in the order they first did.
    pub fn known_accounts(&self) -> CliResult<Vec<String>> {
        let mut accounts = vec![LOCAL_ACCOUNT.to_owned()];
        match fs::read(self.dir.join(KNOWN_ACCOUNTS_FILE)) {
            Ok(bytes) => {
                let text = gridwork_core::text::text_from_bytes("known-accounts", bytes)?;
                for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    if !accounts.iter().any(|a| a == line) {
                        accounts.push(line.to_owned());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(gridwork_core::Error::from(e).into()),
        }
        Ok(accounts)
    }

    fn remember_account(&self, account: &str) -> CliResult<()> {
        let mut accounts = self.known_accounts()?;
        if accounts.iter().any(|a| a == account) {
            return Ok(());
        }
        accounts.push(account.to_owned());
        let text: String = accounts.iter().filter(|a| *a != LOCAL_ACCOUNT).map(|a| format!("{a}\n")).collect();
        write_atomically(&self.dir.join(KNOWN_ACCOUNTS_FILE), text.as_bytes(), 0o600)
    }

    /// Whether an account's store exists already (without creating it).
    pub fn account_exists(&self, account: &str) -> bool {
        gridwork_core::store::AccountPaths::new(&self.dir, account).database.exists()
    }

    /// A wrong key, said with where it came from and which other source
    /// would have been used without it.
    fn wrong_key(&self) -> CliError {
        let device_file = self.dir.join(KEY_FILE_NAME);
        let (source, other) = match &self.key_source {
            KeySource::KeyFile(path) => (
                format!("the key file {}", path.display()),
                if std::env::var_os(KEY_ENV).is_some() { Some(format!("{KEY_ENV} is set too")) } else { None }
                    .or_else(|| device_file.exists().then(|| format!("{} exists too", device_file.display()))),
            ),
            KeySource::Environment => {
                ("GRIDWORK_DEVICE_KEY".to_owned(), device_file.exists().then(|| format!("{} exists too (used when {KEY_ENV} is not set)", device_file.display())))
            }
            KeySource::DeviceFile { path, .. } => (format!("{} (no --key-file, no {KEY_ENV})", path.display()), None),
        };
        let mut message = format!("this device's database cannot be opened with the key from {source}; the data is untouched");
        if let Some(other) = other {
            message.push_str(&format!(": {other}"));
        }
        CliError::from(gridwork_core::Error::DatabaseWrongKey).with_message(message)
    }

    pub fn open(&self, account: &str) -> CliResult<Gridwork> {
        let gw = Gridwork::open(GridworkConfig::new(&self.dir, account, self.key.clone())).map_err(|e| match e {
            gridwork_core::Error::DatabaseWrongKey => self.wrong_key(),
            // The core holds one lock per account store while it is open:
            // two would each recover and send the other's work in progress.
            gridwork_core::Error::StoreInUse { pid } => CliError::new(
                DEVICE_BUSY,
                format!(
                    "another gridwork{} is using this account on this device (a sync, say); try again when it has finished",
                    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
                ),
            ),
            other => other.into(),
        })?;
        let report = gw.open_report();
        if let Some(moved) = &report.corrupt_database_moved_to {
            eprintln!(
                "warning: the database was corrupt; it was moved aside to {} (kept: it may hold unsent reports) and a fresh one was opened",
                moved.display()
            );
        }
        if report.in_flight_recovered > 0 {
            eprintln!("note: {} operation(s) interrupted by an earlier crash are queued again", report.in_flight_recovered);
        }
        Ok(gw)
    }
}

fn ensure_dir(dir: &Path) -> CliResult<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(CliError::new(DEVICE_DIR_UNUSABLE, format!("{} exists and is not a directory", dir.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CliError::new(DEVICE_DIR_UNUSABLE, format!("cannot create {}: {}", dir.display(), e.kind()))),
        Err(e) => Err(CliError::new(DEVICE_DIR_UNUSABLE, format!("cannot use {}: {}", dir.display(), e.kind()))),
    }
}

/// Parse 64 hex digits (surrounding whitespace allowed) into 32 bytes.
/// Messages never echo the key.
pub fn parse_key_hex(text: &str, source: &str) -> CliResult<Vec<u8>> {
    let text = text.trim();
    if text.is_empty() {
        return Err(CliError::new("database_key_missing", format!("the device key from {source} is empty")));
    }
    let length = text.chars().count();
    if length != 64 {
        return Err(CliError::new(
            KEY_INVALID,
            format!("the device key from {source} must be 64 hex digits (32 bytes), got {length} characters"),
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CliError::new(KEY_INVALID, format!("the device key from {source} must be 64 hex digits; it contains other characters")));
    }
    Ok(hex::decode(text).expect("64 hex digits"))
}

fn key_from_env(value: OsString) -> CliResult<Vec<u8>> {
    let source = KEY_ENV.to_owned();
    let text = value
        .into_string()
        .map_err(|_| CliError::new(KEY_INVALID, format!("the device key from {source} must be 64 hex digits; it is not even text")))?;
    parse_key_hex(&text, &source)
}

fn read_key_file(path: &Path) -> CliResult<Vec<u8>> {
    let source = format!("key file {}", path.display());
    let meta = fs::metadata(path).map_err(|e| CliError::new(KEY_FILE_UNREADABLE, format!("the key file: {}", crate::output::file_problem(path, &e))))?;
    if !meta.is_file() {
        return Err(CliError::new(KEY_FILE_UNREADABLE, format!("{source} is not a file")));
    }
    if meta.len() > 4096 {
        return Err(CliError::new(KEY_INVALID, format!("{source} is too large to hold 64 hex digits")));
    }
    let bytes = fs::read(path).map_err(|e| CliError::new(KEY_FILE_UNREADABLE, format!("the key file: {}", crate::output::file_problem(path, &e))))?;
    let text = String::from_utf8(bytes).map_err(|_| CliError::new(KEY_INVALID, format!("{source} must hold 64 hex digits; it is not text")))?;
    parse_key_hex(&text, &source)
}

/// Read `DIR/device.key`, or create it with a fresh random key, readable by
/// the owner only. Two processes racing here agree on one key: the file is
/// written in full under a temporary name and linked into place only if no
/// key is there yet.
fn device_key(path: &Path) -> CliResult<(Vec<u8>, bool)> {
    if path.exists() {
        warn_if_exposed(path);
        return Ok((read_key_file(path)?, false));
    }
    let mut key = [0u8; 32];
    {
        use rand::TryRngCore;
        rand::rngs::OsRng
            .try_fill_bytes(&mut key)
            .map_err(|_| CliError::new("key_generation_failed", "the system's random number generator is unavailable"))?;
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = dir.join(format!(".{KEY_FILE_NAME}.{}.{:016x}.tmp", std::process::id(), rand::random::<u64>()));
    let result = (|| -> io::Result<bool> {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
        // The umask can only take bits away; set exactly 0600 regardless.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
        file.sync_all()?;
        let created = match fs::hard_link(&temp, path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            // A file system without hard links: fall back to a rename when no key is there.
            Err(_) if !path.exists() => {
                fs::rename(&temp, path)?;
                true
            }
            Err(_) => false,
        };
        let _ = fs::remove_file(&temp);
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(created)
    })();
    match result {
        Ok(true) => Ok((key.to_vec(), true)),
        // Another process won the race: use its key.
        Ok(false) => Ok((read_key_file(path)?, false)),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(CliError::new(KEY_FILE_UNREADABLE, format!("cannot create the device key file {}: {}", path.display(), e.kind())))
        }
    }
}

fn warn_if_exposed(path: &Path) {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!("warning: {} is readable by other users (mode {:o}); run: chmod 600 {}", path.display(), meta.permissions().mode() & 0o777, path.display());
    }
}

/// Write a small file under a temporary name, fsync, rename into place.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> CliResult<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.{:016x}.tmp", std::process::id(), rand::random::<u64>()));
    let result = (|| -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temp);
        gridwork_core::Error::from(e).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_64_hex_digits() {
        let good = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
        assert_eq!(parse_key_hex(good, "t").unwrap().len(), 32);
        assert_eq!(parse_key_hex("abcd", "t").unwrap_err().code, "database_key_invalid");
        assert_eq!(parse_key_hex(&"zz".repeat(32), "t").unwrap_err().code, "database_key_invalid");
        assert_eq!(parse_key_hex("  ", "t").unwrap_err().code, "database_key_missing");
        // Multi-byte characters count as characters, and never panic.
        assert_eq!(parse_key_hex(&"é".repeat(32), "t").unwrap_err().code, "database_key_invalid");
        assert_eq!(parse_key_hex(&"é".repeat(64), "t").unwrap_err().code, "database_key_invalid");
    }

    #[test]
    fn a_generated_key_is_owner_only_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        let (first, created) = device_key(&path).unwrap();
        assert!(created);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (second, created) = device_key(&path).unwrap();
        assert!(!created);
        assert_eq!(first, second);
        // No temporary files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn accounts_default_to_local_and_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device { dir: dir.path().to_owned(), key: vec![7; 32], key_source: KeySource::Environment };
        assert_eq!(device.current_account().unwrap(), LOCAL_ACCOUNT);
        device.set_current_account(Some("w1@example.org:443")).unwrap();
        assert_eq!(device.current_account().unwrap(), "w1@example.org:443");
        device.set_current_account(Some("w2@example.org:443")).unwrap();
        device.set_current_account(Some("w1@example.org:443")).unwrap();
        assert_eq!(device.known_accounts().unwrap(), ["local", "w1@example.org:443", "w2@example.org:443"]);
        device.set_current_account(None).unwrap();
        assert_eq!(device.current_account().unwrap(), LOCAL_ACCOUNT);
    }
}

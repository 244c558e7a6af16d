//! The on-device store: the one routine that opens a database, with its
//! pragmas, encryption, migrations and corruption handling.
//!
//! Layout under the data directory, one folder per signed-in account so a
//! shared phone (AB岗) never mixes two users' unsent work:
//!
//! ```text
//! <data_dir>/accounts/<account key>/gridwork.db        SQLCipher database
//!                                   gridwork.keycheck  key verifier
//!                                   gridwork.lock      held while open (pid inside)
//!                                   photos/...         evidence files
//!                                   corrupt/...        databases moved aside
//! ```
//!
//! The account key is a hash of the account id, so a user name never appears
//! in a path.

pub mod files;
mod keycheck;
pub mod migrations;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, ffi::ErrorCode};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use keycheck::KeyCheck;

/// Raw SQLCipher key length. Raw keys skip PBKDF2, so open stays fast; the
/// key comes from Android Keystore / iOS Keychain, never from a person.
pub const KEY_LENGTH: usize = 32;

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit that returned survives power loss. The
    /// default, because a capture acknowledged to the user must survive a
    /// dead battery (see the capture benchmark for what it costs).
    #[default]
    Full,
    /// `synchronous=NORMAL`: survives a killed process, may lose the last
    /// commits on power loss. For benchmarks and bulk imports only.
    Normal,
}

/// Paths of one account's partition.
#[derive(Clone, Debug)]
pub struct AccountPaths {
    pub root: PathBuf,
    pub database: PathBuf,
    pub keycheck: PathBuf,
    pub lock: PathBuf,
    pub photos: PathBuf,
    pub corrupt: PathBuf,
}

impl AccountPaths {
    pub fn new(data_dir: &Path, account_id: &str) -> AccountPaths {
        let digest = Sha256::digest(format!("gridwork-account:{account_id}").as_bytes());
        let root = data_dir.join("accounts").join(hex::encode(&digest[..16]));
        AccountPaths {
            database: root.join("gridwork.db"),
            keycheck: root.join("gridwork.keycheck"),
            lock: root.join("gridwork.lock"),
            photos: root.join("photos"),
            corrupt: root.join("corrupt"),
            root,
        }
    }
}

/// What happened while opening, for the app to report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenReport {
    /// A new, empty database was created.
    pub created: bool,
    /// Schema version found on disk before migrating (0 for a new file).
    pub schema_version_found: i64,
    pub schema_version: i64,
    /// The database was corrupt and moved aside to this path (kept, never
    /// deleted: it may hold unsent evidence), with its photo folder beside
    /// it (`…-photos`); a fresh one was opened.
    pub corrupt_database_moved_to: Option<PathBuf>,
    /// Operations found in flight (the process died mid-sync), now pending.
    pub in_flight_recovered: u64,
    /// Temp files of photo writes a killed process left, removed at open.
    /// Photo files no row references are swept later, off the open path:
    /// by the session's first sync, or [`crate::Gridwork::sweep_orphan_files`].
    pub orphan_files_removed: u64,
    pub open_duration: Duration,
}

pub struct OpenedStore {
    /// The one writer.
    pub connection: Connection,
    /// A second connection to the same database that can only read (UI
    /// lists and details). In WAL mode it reads the last commit while the
    /// writer applies a sync page, so a list never waits behind a sync.
    pub reader: Connection,
    pub paths: AccountPaths,
    pub report: OpenReport,
    /// The store's lock, held for as long as the store is open.
    pub lock: fs::File,
}

/// Open (creating if needed) the database of one account, in steps:
/// connect (key, first read: wrong key or corrupt page 1), prepare
/// (pragmas), create the latest schema or upgrade one version at a time
/// ([`migrations`]), finish (key verifier, reader connection). `now_ms`
/// (from the injected clock) names a corrupt database moved aside.
pub fn open(data_dir: &Path, account_id: &str, key: &[u8], durability: Durability, now_ms: i64) -> Result<OpenedStore> {
    let started = Instant::now();
    if key.is_empty() {
        return Err(Error::DatabaseKeyMissing);
    }
    if key.len() != KEY_LENGTH {
        return Err(Error::DatabaseKeyLength { expected: KEY_LENGTH, actual: key.len() });
    }
    let paths = AccountPaths::new(data_dir, account_id);
    fs::create_dir_all(&paths.root)?;
    let lock = lock(&paths.lock)?;
    if paths.root.join(WIPE_MARKER).exists() {
        log::info!("store: finishing a wipe that was cut short");
        wipe_files(&paths)?;
    }

    let existed = fs::metadata(&paths.database).map(|m| m.len() > 0).unwrap_or(false);
    let key_check = if existed { keycheck::check(&paths.keycheck, key)? } else { KeyCheck::Absent };
    if key_check == KeyCheck::Mismatch {
        log::warn!("store: wrong database key (verifier mismatch), database left untouched");
        return Err(Error::DatabaseWrongKey);
    }

    let mut report = OpenReport { created: !existed, ..OpenReport::default() };
    let (connection, found) = match open_writer(&paths.database, key, durability) {
        Ok(opened) => opened,
        Err(Error::DatabaseCorrupt) => {
            report.corrupt_database_moved_to = Some(move_aside(&paths, now_ms)?);
            report.created = true;
            open_writer(&paths.database, key, durability)?
        }
        // Without a verifier we cannot tell a wrong key from a corrupt
        // first page; a wrong key is the answer that risks nothing.
        Err(Error::DatabaseWrongKey) if key_check == KeyCheck::Matches => {
            report.corrupt_database_moved_to = Some(move_aside(&paths, now_ms)?);
            report.created = true;
            open_writer(&paths.database, key, durability)?
        }
        Err(Error::DatabaseWrongKey) => {
            log::warn!("store: database unreadable with this key and no verifier to tell a corrupt file, left untouched");
            return Err(Error::DatabaseWrongKey);
        }
        Err(other) => return Err(other),
    };
    let reader = finish(&paths, key, key_check, report.created)?;
    report.schema_version_found = found;
    report.schema_version = migrations::LATEST_VERSION;
    report.open_duration = started.elapsed();
    Ok(OpenedStore { connection, reader, paths, report, lock })
}

/// Written before an account's files are removed and removed last, so a
/// wipe cut short by a crash or a dead battery is finished at the next
/// open, before anything is read.
const WIPE_MARKER: &str = "gridwork.wipe";

/// Remove every file of the account partition: the database with its WAL,
/// the key verifier, photos (originals, thumbnails, renditions, fetched)
/// and databases moved aside as corrupt. The lock file stays (its holder
/// is the caller). Safe to repeat; the caller has checked that nothing
/// unsent is lost.
pub fn wipe_files(paths: &AccountPaths) -> Result<()> {
    let marker = paths.root.join(WIPE_MARKER);
    fs::File::create(&marker)?.sync_all()?;
    files::sync_dir(&paths.root)?;
    let gone = |result: std::io::Result<()>| match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = paths.database.clone().into_os_string();
        name.push(suffix);
        gone(fs::remove_file(name))?;
    }
    gone(fs::remove_file(&paths.keycheck))?;
    gone(fs::remove_dir_all(&paths.photos))?;
    gone(fs::remove_dir_all(&paths.corrupt))?;
    files::sync_dir(&paths.root)?;
    fs::remove_file(&marker)?;
    files::sync_dir(&paths.root)?;
    Ok(())
}

/// Whether a wipe began and did not finish (its marker is on disk).
pub fn wipe_pending(paths: &AccountPaths) -> bool {
    paths.root.join(WIPE_MARKER).exists()
}

/// An empty store in memory that refuses writes: what a wiped store's
/// connections become, so reads find nothing and nothing written after
/// the wipe can be silently lost.
pub fn empty_read_only() -> Result<Connection> {
    let mut conn = Connection::open_in_memory()?;
    migrations::migrate(&mut conn)?;
    conn.execute_batch("PRAGMA query_only = 1;")?;
    Ok(conn)
}

/// One open store per account partition, across processes and within one:
/// opening recovers interrupted operations and sweeps files no row names,
/// which would take a second instance's sync in flight and its photo being
/// written. An OS file lock, so a killed process never leaves it behind;
/// the holder's pid is written inside for the message.
fn lock(path: &Path) -> Result<fs::File> {
    use std::io::{Read, Seek, Write};
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.rewind()?;
            write!(file, "{}", std::process::id())?;
            Ok(file)
        }
        Err(fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
            log::warn!("store: already open elsewhere, not opened twice");
            Err(Error::StoreInUse { pid })
        }
        Err(fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

impl OpenReport {
    /// One line for field diagnostics: counts, versions and time only, no
    /// path (it names the account) and no content.
    pub fn log(&self) {
        log::info!(
            "store: opened schema v{} (found v{}{}{}), {} in-flight operations recovered, {} leftover temp files removed, {} ms",
            self.schema_version,
            self.schema_version_found,
            if self.created { ", created" } else { "" },
            if self.corrupt_database_moved_to.is_some() { ", corrupt database moved aside" } else { "" },
            self.in_flight_recovered,
            self.orphan_files_removed,
            self.open_duration.as_millis()
        );
    }
}

/// Connect with the key and read page 1: a wrong key or a corrupt header
/// fails here, before anything is written.
fn connect(path: &Path, key: &[u8]) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
    conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", hex::encode(key))).map_err(classify)?;
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())).map_err(classify)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(classify)?;
    Ok(conn)
}

/// The writer's pragmas.
fn prepare(conn: &Connection, durability: Durability) -> Result<()> {
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {synchronous};
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;"
    ))
    .map_err(classify)
}

/// The writer, with its schema current. Returns the version found.
fn open_writer(path: &Path, key: &[u8], durability: Durability) -> Result<(Connection, i64)> {
    let mut conn = connect(path, key)?;
    prepare(&conn, durability)?;
    let found = migrations::migrate(&mut conn)?;
    Ok((conn, found))
}

/// Once the schema is current: keep the key verifier in step with the
/// database and open the reader (it only reads, so it comes last).
fn finish(paths: &AccountPaths, key: &[u8], key_check: KeyCheck, created: bool) -> Result<Connection> {
    if key_check != KeyCheck::Matches || created {
        keycheck::write(&paths.keycheck, key)?;
    }
    let reader = connect(&paths.database, key)?;
    reader.execute_batch("PRAGMA query_only = ON; PRAGMA temp_store = MEMORY;").map_err(classify)?;
    Ok(reader)
}

fn classify(error: rusqlite::Error) -> Error {
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::DatabaseWrongKey,
        Some(ErrorCode::DatabaseCorrupt) => Error::DatabaseCorrupt,
        _ => Error::from(error),
    }
}

/// Rename the database and its WAL/SHM files into `corrupt/`, never delete.
fn move_aside(paths: &AccountPaths, now_ms: i64) -> Result<PathBuf> {
    log::warn!("store: database corrupt, moving it and its photos aside and starting a fresh one");
    fs::create_dir_all(&paths.corrupt)?;
    let stamp = format!("{now_ms}-{}", hex::encode(rand::random::<[u8; 4]>()));
    let target = paths.corrupt.join(format!("gridwork-{stamp}.db"));
    fs::rename(&paths.database, &target)?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", paths.database.display()));
        if side.exists() {
            fs::rename(&side, format!("{}{suffix}", target.display()))?;
        }
    }
    // Keep the verifier with the file so the moved database stays readable
    // by the same key for later recovery.
    if paths.keycheck.exists() {
        fs::copy(&paths.keycheck, target.with_extension("keycheck"))?;
    }
    // The photos go with their database: the fresh database references none
    // of them, and the sweeper must not take evidence the old one may hold.
    if paths.photos.exists() {
        fs::rename(&paths.photos, paths.corrupt.join(format!("gridwork-{stamp}-photos")))?;
    }
    files::sync_dir(&paths.corrupt)?;
    files::sync_dir(&paths.root)?;
    Ok(target)
}

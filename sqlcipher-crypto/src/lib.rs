//! SQLCipher's crypto provider, in Rust.
//!
//! The store is SQLCipher. Its stock providers are OpenSSL, Apple's
//! CommonCrypto and libtomcrypt. On Apple the phone library uses CommonCrypto
//! (part of the OS). Elsewhere (Android, Linux) it used to link a static
//! OpenSSL, about 3.3 MiB of a 10 MiB library, for five primitives. This crate
//! provides the same five through SQLCipher's provider hook
//! (`SQLCIPHER_CRYPTO_CUSTOM`): HMAC and PBKDF2 over SHA-1/256/512, the system
//! RNG (ring, with its assembly), and AES-256-CBC without padding (RustCrypto
//! `aes`, AES-NI or ARMv8 AES picked at run time). libtomcrypt would be smaller
//! still but is portable C without hardware AES: every page read and written
//! would pay for it.
//!
//! The file format is SQLCipher's, not the provider's: page layout, salt, IV,
//! HMAC and KDF settings are decided by SQLCipher's codec, which only calls
//! these functions. A store written with OpenSSL opens with this provider and
//! back (the tests check a file written by the OpenSSL build).
//!
//! The vendored `libsqlite3-sys` (feature `bundled-sqlcipher-custom-crypto`)
//! compiles SQLCipher with `-DSQLCIPHER_CRYPTO_CUSTOM=gridwork_sqlcipher_setup`
//! and links this crate. SQLCipher calls [`gridwork_sqlcipher_setup`] once,
//! when SQLite initialises, to fill in its provider table.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::num::NonZeroU32;

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use ring::rand::SecureRandom;
use ring::{hmac, pbkdf2};

const SQLITE_OK: c_int = 0;
const SQLITE_ERROR: c_int = 1;

// SQLCipher's constants (sqlcipher.h); they are part of its provider ABI.
const SQLCIPHER_DECRYPT: c_int = 0;
const SQLCIPHER_ENCRYPT: c_int = 1;
const SQLCIPHER_SHA1: c_int = 0;
const SQLCIPHER_SHA256: c_int = 1;
const SQLCIPHER_SHA512: c_int = 2;

const KEY_SIZE: usize = 32;
const IV_SIZE: usize = 16;
const BLOCK_SIZE: usize = 16;

/// What `PRAGMA cipher_provider` answers.
pub const PROVIDER_NAME: &str = "gridwork";

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// SQLCipher 4.19's `struct sqlcipher_provider`, field for field. The
/// vendored `libsqlite3-sys` pins `sqlcipher-src` exactly, so this layout
/// changes only with a deliberate upgrade (and the tests open a real store
/// through it).
#[repr(C)]
pub struct SqlcipherProvider {
    init: Option<unsafe extern "C" fn() -> c_int>,
    shutdown: Option<unsafe extern "C" fn()>,
    get_provider_name: Option<unsafe extern "C" fn(*mut c_void) -> *const c_char>,
    add_random: Option<unsafe extern "C" fn(*mut c_void, *const c_void, c_int) -> c_int>,
    random: Option<unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int>,
    hmac: Option<
        unsafe extern "C" fn(
            *mut c_void,
            c_int,
            *const u8,
            c_int,
            *const u8,
            c_int,
            *const u8,
            c_int,
            *mut u8,
        ) -> c_int,
    >,
    kdf: Option<
        unsafe extern "C" fn(
            *mut c_void,
            c_int,
            *const u8,
            c_int,
            *const u8,
            c_int,
            c_int,
            c_int,
            *mut u8,
        ) -> c_int,
    >,
    cipher: Option<
        unsafe extern "C" fn(
            *mut c_void,
            c_int,
            *const u8,
            c_int,
            *const u8,
            *const u8,
            c_int,
            *mut u8,
        ) -> c_int,
    >,
    get_cipher: Option<unsafe extern "C" fn(*mut c_void) -> *const c_char>,
    get_key_sz: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    get_iv_sz: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    get_block_sz: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    get_hmac_sz: Option<unsafe extern "C" fn(*mut c_void, c_int) -> c_int>,
    ctx_init: Option<unsafe extern "C" fn(*mut *mut c_void) -> c_int>,
    ctx_free: Option<unsafe extern "C" fn(*mut *mut c_void) -> c_int>,
    fips_status: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    get_provider_version: Option<unsafe extern "C" fn(*mut c_void) -> *const c_char>,
    next: *mut SqlcipherProvider,
}

/// Fills SQLCipher's provider table. Called by SQLCipher (through
/// `SQLCIPHER_CRYPTO_CUSTOM`) when SQLite initialises.
///
/// # Safety
/// `p` is null or points to a writable `sqlcipher_provider`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn gridwork_sqlcipher_setup(p: *mut SqlcipherProvider) -> c_int {
    if p.is_null() {
        return SQLITE_ERROR;
    }
    let table = SqlcipherProvider {
        // Nothing to start or stop: ring and aes hold no global state.
        init: None,
        shutdown: None,
        get_provider_name: Some(provider_name),
        add_random: Some(add_random),
        random: Some(random),
        hmac: Some(hmac),
        kdf: Some(kdf),
        cipher: Some(cipher),
        get_cipher: Some(cipher_name),
        get_key_sz: Some(key_size),
        get_iv_sz: Some(iv_size),
        get_block_sz: Some(block_size),
        get_hmac_sz: Some(hmac_size),
        ctx_init: Some(ctx_init),
        ctx_free: Some(ctx_free),
        fips_status: Some(fips_status),
        get_provider_version: Some(provider_version),
        next: std::ptr::null_mut(),
    };
    // SAFETY: the caller hands a writable provider struct of this layout.
    unsafe { p.write(table) };
    SQLITE_OK
}

unsafe extern "C" fn provider_name(_ctx: *mut c_void) -> *const c_char {
    c"gridwork".as_ptr()
}

unsafe extern "C" fn provider_version(_ctx: *mut c_void) -> *const c_char {
    c"ring 0.17 + aes 0.8".as_ptr()
}

unsafe extern "C" fn cipher_name(_ctx: *mut c_void) -> *const c_char {
    c"aes-256-cbc".as_ptr()
}

unsafe extern "C" fn key_size(_ctx: *mut c_void) -> c_int {
    KEY_SIZE as c_int
}

unsafe extern "C" fn iv_size(_ctx: *mut c_void) -> c_int {
    IV_SIZE as c_int
}

unsafe extern "C" fn block_size(_ctx: *mut c_void) -> c_int {
    BLOCK_SIZE as c_int
}

unsafe extern "C" fn fips_status(_ctx: *mut c_void) -> c_int {
    0
}

// No per-connection state: every call is self-contained.
unsafe extern "C" fn ctx_init(_ctx: *mut *mut c_void) -> c_int {
    SQLITE_OK
}

unsafe extern "C" fn ctx_free(_ctx: *mut *mut c_void) -> c_int {
    SQLITE_OK
}

// The OS generator needs no seeding; extra entropy is accepted and unused
// (as CommonCrypto's provider does).
unsafe extern "C" fn add_random(_ctx: *mut c_void, _buffer: *const c_void, _len: c_int) -> c_int {
    SQLITE_OK
}

unsafe extern "C" fn random(_ctx: *mut c_void, buffer: *mut c_void, len: c_int) -> c_int {
    // SAFETY: SQLCipher passes a buffer of `len` writable bytes.
    let Some(out) = (unsafe { slice_mut(buffer.cast(), len) }) else {
        return SQLITE_ERROR;
    };
    status(ring::rand::SystemRandom::new().fill(out).is_ok())
}

fn hmac_algorithm(algorithm: c_int) -> Option<hmac::Algorithm> {
    match algorithm {
        SQLCIPHER_SHA1 => Some(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
        SQLCIPHER_SHA256 => Some(hmac::HMAC_SHA256),
        SQLCIPHER_SHA512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

unsafe extern "C" fn hmac_size(_ctx: *mut c_void, algorithm: c_int) -> c_int {
    hmac_algorithm(algorithm)
        .map(|a| a.digest_algorithm().output_len() as c_int)
        .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn hmac(
    _ctx: *mut c_void,
    algorithm: c_int,
    key: *const u8,
    key_len: c_int,
    input: *const u8,
    input_len: c_int,
    input2: *const u8,
    input2_len: c_int,
    out: *mut u8,
) -> c_int {
    let Some(algorithm) = hmac_algorithm(algorithm) else {
        return SQLITE_ERROR;
    };
    // SAFETY: SQLCipher passes buffers of the lengths it names; the second
    // input is optional (null).
    let (Some(key), Some(input)) = (unsafe { slice(key, key_len) }, unsafe { slice(input, input_len) }) else {
        return SQLITE_ERROR;
    };
    let mut context = hmac::Context::with_key(&hmac::Key::new(algorithm, key));
    context.update(input);
    if !input2.is_null() {
        // SAFETY: as above.
        let Some(input2) = (unsafe { slice(input2, input2_len) }) else {
            return SQLITE_ERROR;
        };
        context.update(input2);
    }
    let tag = context.sign();
    let tag = tag.as_ref();
    // SAFETY: `out` holds get_hmac_sz(algorithm) bytes, which is the tag's size.
    let Some(out) = (unsafe { slice_mut(out, tag.len() as c_int) }) else {
        return SQLITE_ERROR;
    };
    out.copy_from_slice(tag);
    SQLITE_OK
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn kdf(
    _ctx: *mut c_void,
    algorithm: c_int,
    pass: *const u8,
    pass_len: c_int,
    salt: *const u8,
    salt_len: c_int,
    iterations: c_int,
    key_len: c_int,
    key: *mut u8,
) -> c_int {
    let algorithm = match algorithm {
        SQLCIPHER_SHA1 => pbkdf2::PBKDF2_HMAC_SHA1,
        SQLCIPHER_SHA256 => pbkdf2::PBKDF2_HMAC_SHA256,
        SQLCIPHER_SHA512 => pbkdf2::PBKDF2_HMAC_SHA512,
        _ => return SQLITE_ERROR,
    };
    let Some(iterations) = u32::try_from(iterations).ok().and_then(NonZeroU32::new) else {
        return SQLITE_ERROR;
    };
    // SAFETY: SQLCipher passes buffers of the lengths it names.
    let (Some(pass), Some(salt), Some(key)) = (
        unsafe { slice(pass, pass_len) },
        unsafe { slice(salt, salt_len) },
        unsafe { slice_mut(key, key_len) },
    ) else {
        return SQLITE_ERROR;
    };
    pbkdf2::derive(algorithm, iterations, salt, pass, key);
    SQLITE_OK
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn cipher(
    _ctx: *mut c_void,
    mode: c_int,
    key: *const u8,
    key_len: c_int,
    iv: *const u8,
    input: *const u8,
    len: c_int,
    out: *mut u8,
) -> c_int {
    if key_len as usize != KEY_SIZE || len < 0 || !(len as usize).is_multiple_of(BLOCK_SIZE) || input.is_null() {
        return SQLITE_ERROR;
    }
    // SAFETY: a key of key_len bytes and an IV of get_iv_sz() bytes.
    let (Some(key), Some(iv)) = (unsafe { slice(key, key_len) }, unsafe { slice(iv, IV_SIZE as c_int) }) else {
        return SQLITE_ERROR;
    };
    // The page goes to `out` first and is transformed there, so an input that
    // is also the output works too. SAFETY: both hold `len` bytes; `copy`
    // allows them to overlap.
    unsafe { std::ptr::copy(input, out, len as usize) };
    let Some(buffer) = (unsafe { slice_mut(out, len) }) else {
        return SQLITE_ERROR;
    };
    let done = match mode {
        SQLCIPHER_ENCRYPT => Aes256CbcEnc::new_from_slices(key, iv)
            .map(|c| c.encrypt_padded_mut::<NoPadding>(buffer, len as usize).is_ok()),
        SQLCIPHER_DECRYPT => {
            Aes256CbcDec::new_from_slices(key, iv).map(|c| c.decrypt_padded_mut::<NoPadding>(buffer).is_ok())
        }
        _ => return SQLITE_ERROR,
    };
    status(done == Ok(true))
}

fn status(ok: bool) -> c_int {
    if ok { SQLITE_OK } else { SQLITE_ERROR }
}

/// A C buffer as a slice: None for a negative length or a null pointer with
/// a length (a null pointer with length 0 is the empty slice).
unsafe fn slice<'a>(ptr: *const u8, len: c_int) -> Option<&'a [u8]> {
    let len = usize::try_from(len).ok()?;
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the caller vouches for `len` readable bytes at `ptr`.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) })
}

unsafe fn slice_mut<'a>(ptr: *mut u8, len: c_int) -> Option<&'a mut [u8]> {
    let len = usize::try_from(len).ok()?;
    if len == 0 {
        return Some(&mut []);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the caller vouches for `len` writable bytes at `ptr`.
    Some(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> SqlcipherProvider {
        let mut p = std::mem::MaybeUninit::<SqlcipherProvider>::zeroed();
        assert_eq!(unsafe { gridwork_sqlcipher_setup(p.as_mut_ptr()) }, SQLITE_OK);
        unsafe { p.assume_init() }
    }

    // Known answers from the standards, so the glue (argument order, lengths,
    // modes) is checked and not only the round trip.

    #[test]
    fn aes_256_cbc_matches_nist_sp800_38a() {
        // SP 800-38A F.2.5 (CBC-AES256.Encrypt), first two blocks.
        let key = hex::decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4").unwrap();
        let iv = hex::decode("000102030405060708090a0b0c0d0e0f").unwrap();
        let plain = hex::decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51").unwrap();
        let expected = "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d";
        let p = provider();
        let cipher = p.cipher.unwrap();
        let mut out = vec![0u8; plain.len()];
        let rc = unsafe {
            cipher(std::ptr::null_mut(), SQLCIPHER_ENCRYPT, key.as_ptr(), 32, iv.as_ptr(), plain.as_ptr(), 32, out.as_mut_ptr())
        };
        assert_eq!(rc, SQLITE_OK);
        assert_eq!(hex::encode(&out), expected);
        // Decrypt in place (input and output the same buffer).
        let rc = unsafe {
            cipher(std::ptr::null_mut(), SQLCIPHER_DECRYPT, key.as_ptr(), 32, iv.as_ptr(), out.as_ptr(), 32, out.as_mut_ptr())
        };
        assert_eq!(rc, SQLITE_OK);
        assert_eq!(out, plain);
    }

    #[test]
    fn cipher_refuses_wrong_key_size_and_partial_blocks() {
        let p = provider();
        let cipher = p.cipher.unwrap();
        let key = [7u8; 32];
        let iv = [0u8; 16];
        let data = [1u8; 20];
        let mut out = [0u8; 32];
        let partial = unsafe {
            cipher(std::ptr::null_mut(), SQLCIPHER_ENCRYPT, key.as_ptr(), 32, iv.as_ptr(), data.as_ptr(), 20, out.as_mut_ptr())
        };
        assert_eq!(partial, SQLITE_ERROR);
        let short_key = unsafe {
            cipher(std::ptr::null_mut(), SQLCIPHER_ENCRYPT, key.as_ptr(), 16, iv.as_ptr(), data.as_ptr(), 16, out.as_mut_ptr())
        };
        assert_eq!(short_key, SQLITE_ERROR);
        let bad_mode =
            unsafe { cipher(std::ptr::null_mut(), 7, key.as_ptr(), 32, iv.as_ptr(), data.as_ptr(), 16, out.as_mut_ptr()) };
        assert_eq!(bad_mode, SQLITE_ERROR);
    }

    #[test]
    fn hmac_matches_rfc_4231_over_two_inputs() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?",
        // given split in two as SQLCipher does (page, then page number).
        let p = provider();
        let hmac = p.hmac.unwrap();
        let key = b"Jefe";
        let (a, b) = b"what do ya want for nothing?".split_at(10);
        let mut out = [0u8; 64];
        let rc = unsafe {
            hmac(
                std::ptr::null_mut(),
                SQLCIPHER_SHA512,
                key.as_ptr(),
                4,
                a.as_ptr(),
                a.len() as c_int,
                b.as_ptr(),
                b.len() as c_int,
                out.as_mut_ptr(),
            )
        };
        assert_eq!(rc, SQLITE_OK);
        assert_eq!(
            hex::encode(out),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        let mut out256 = [0u8; 32];
        let whole = b"what do ya want for nothing?";
        let rc = unsafe {
            hmac(std::ptr::null_mut(), SQLCIPHER_SHA256, key.as_ptr(), 4, whole.as_ptr(), 28, std::ptr::null(), 0, out256.as_mut_ptr())
        };
        assert_eq!(rc, SQLITE_OK);
        assert_eq!(hex::encode(out256), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert_eq!(unsafe { (p.get_hmac_sz.unwrap())(std::ptr::null_mut(), SQLCIPHER_SHA1) }, 20);
        assert_eq!(unsafe { (p.get_hmac_sz.unwrap())(std::ptr::null_mut(), 9) }, 0);
        let unknown = unsafe {
            hmac(std::ptr::null_mut(), 9, key.as_ptr(), 4, whole.as_ptr(), 28, std::ptr::null(), 0, out256.as_mut_ptr())
        };
        assert_eq!(unknown, SQLITE_ERROR);
    }

    #[test]
    fn pbkdf2_matches_rfc_6070_and_refuses_zero_iterations() {
        // RFC 6070: "password" / "salt", 2 iterations, 20 bytes, HMAC-SHA1.
        let p = provider();
        let kdf = p.kdf.unwrap();
        let mut key = [0u8; 20];
        let rc = unsafe {
            kdf(std::ptr::null_mut(), SQLCIPHER_SHA1, b"password".as_ptr(), 8, b"salt".as_ptr(), 4, 2, 20, key.as_mut_ptr())
        };
        assert_eq!(rc, SQLITE_OK);
        assert_eq!(hex::encode(key), "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957");
        let zero = unsafe {
            kdf(std::ptr::null_mut(), SQLCIPHER_SHA512, b"password".as_ptr(), 8, b"salt".as_ptr(), 4, 0, 20, key.as_mut_ptr())
        };
        assert_eq!(zero, SQLITE_ERROR);
    }

    #[test]
    fn random_fills_the_buffer_and_names_are_sqlciphers() {
        let p = provider();
        let random = p.random.unwrap();
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        unsafe {
            assert_eq!(random(std::ptr::null_mut(), a.as_mut_ptr().cast(), 32), SQLITE_OK);
            assert_eq!(random(std::ptr::null_mut(), b.as_mut_ptr().cast(), 32), SQLITE_OK);
            assert_eq!(random(std::ptr::null_mut(), a.as_mut_ptr().cast(), -1), SQLITE_ERROR);
        }
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
        let name = unsafe { std::ffi::CStr::from_ptr((p.get_provider_name.unwrap())(std::ptr::null_mut())) };
        assert_eq!(name.to_str().unwrap(), PROVIDER_NAME);
        assert_eq!(unsafe { (p.get_key_sz.unwrap())(std::ptr::null_mut()) }, 32);
        assert_eq!(unsafe { (p.get_iv_sz.unwrap())(std::ptr::null_mut()) }, 16);
    }
}

//! The envelope around every entry the file backend writes (`docs/format.md`, "File envelope").
//!
//! ```text
//! offset  size  field
//!      0     4  magic "FLCH"
//!      4     1  envelope version (2)
//!      5     1  flags: bit 0 = payload is zstd-compressed, bit 1 = tag is a keyed MAC
//!      6     2  reserved, zero
//!      8     8  stored payload length (u64 LE)
//!     16     8  original payload length (u64 LE; equal to the stored length when uncompressed)
//!     24    32  address: the digest (value) or key (call record) the entry is stored under
//!     56    32  tag over bytes 0..24, the address and the stored payload:
//!               unsigned, xxh3-128 (16 bytes LE, then 16 zero bytes);
//!               signed, blake3 keyed with the signing key
//!     88     …  stored payload
//! ```
//!
//! A reader passes the address it looked up; the entry opens only when it carries that address
//! and its tag verifies over it, so an entry copied or moved to another address is refused
//! (signed: even by someone who can compute checksums). Lengths are trusted only after the tag
//! has been checked, and never beyond the reader's `max_size`: decompression streams into a
//! buffer that grows as bytes arrive and stops past the recorded length.
//!
//! Version 1 entries (no address) are reported as [`EnvelopeError::OldFormat`], for the backend
//! to treat as a miss that the next store rewrites.

use std::fmt;

use crate::{Digest, integrity};

/// The first bytes of every entry.
pub const MAGIC: [u8; 4] = *b"FLCH";
/// The envelope version this code writes and reads.
pub const VERSION: u8 = 2;
/// Header size in bytes.
pub const HEADER: usize = 88;

const FLAG_ZSTD: u8 = 0b01;
const FLAG_SIGNED: u8 = 0b10;

/// A signing key: 32 bytes derived from a secret of any length.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey([u8; 32]);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// The key's bytes, for MACs.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key derived from `secret` with blake3's key derivation under the context
    /// `"fleche entry signing v1"`.
    #[must_use]
    pub fn from_secret(secret: &[u8]) -> Self {
        Self(blake3::derive_key("fleche entry signing v1", secret))
    }

    /// Parses a secret written in hexadecimal (any even number of digits, at least 32, i.e. 16
    /// bytes) and derives the key from its bytes.
    ///
    /// # Errors
    ///
    /// What is wrong with the text (never the text itself: it is a secret).
    pub fn from_hex(hex: &str) -> Result<Self, ParseSigningKeyError> {
        let hex = hex.trim();
        if hex.len() < 32 || !hex.len().is_multiple_of(2) {
            return Err(ParseSigningKeyError::Length { len: hex.len() });
        }
        let mut bytes = Vec::with_capacity(hex.len() / 2);
        for pair in hex.as_bytes().chunks_exact(2) {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => bytes.push(((hi << 4) | lo) as u8),
                _ => return Err(ParseSigningKeyError::NotHex),
            }
        }
        Ok(Self::from_secret(&bytes))
    }
}

/// Why a hexadecimal secret is not a signing key ([`SigningKey::from_hex`]). The message never
/// repeats the text: it is a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSigningKeyError {
    /// Fewer than 32 digits, or an odd number.
    #[error(
        "a secret key must be an even number of hexadecimal digits, at least 32 (got {len} characters)"
    )]
    Length {
        /// The number of characters given (after trimming white space).
        len: usize,
    },
    /// A character that is not a hexadecimal digit.
    #[error("a secret key may contain only hexadecimal digits")]
    NotHex,
}

/// Why an entry could not be sealed ([`seal`], [`seal_parts`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// zstd failed to compress the payload.
    #[error("cannot compress: {source}")]
    Compress {
        /// The compressor's error.
        #[source]
        source: std::io::Error,
    },
    /// Compression was asked for, but this build has no zstd.
    #[error("cannot compress: fleche was built without the `zstd` feature")]
    ZstdDisabled,
}

/// Why an entry could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Shorter than a header, or shorter or longer than its header says.
    #[error("truncated entry ({len} bytes)")]
    Truncated {
        /// The entry's actual size.
        len: usize,
    },
    /// Not an entry of this format.
    #[error("not a fleche entry (bad magic)")]
    BadMagic,
    /// Written by a newer fleche.
    #[error("entry format version {0} is newer than this fleche reads ({VERSION})")]
    UnsupportedVersion(u8),
    /// Written by an older fleche, in a format that does not bind the entry to its address.
    #[error("entry format version {0} is older than this fleche writes ({VERSION})")]
    OldFormat(u8),
    /// A sound entry, but of another address (copied or moved).
    #[error("the entry of {found} is stored here")]
    WrongAddress {
        /// The address the entry carries.
        found: Digest,
    },
    /// Larger than the reader's limit (`max_entry_size`).
    #[error("{size} bytes, more than max_entry_size ({max})")]
    TooLarge {
        /// The size the entry says it has (stored or decompressed).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Flags or reserved bytes this version does not know.
    #[error("unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// The checksum does not match: the entry is corrupt.
    #[error("checksum mismatch")]
    Checksum,
    /// Signed, but no configured key verifies it.
    #[error("signature does not verify with any configured key")]
    BadSignature,
    /// Signed, but no key is configured to verify it.
    #[error("entry is signed but no secret key is configured")]
    SignedWithoutKey,
    /// Not signed, but keys are configured: unsigned entries are not trusted.
    #[error("entry is not signed but secret keys are configured")]
    Unsigned,
    /// The compressed payload does not decompress to its recorded length.
    #[error("cannot decompress: {0}")]
    Decompress(String),
    /// The payload is compressed, but this build has no zstd to decompress it.
    #[error("entry is zstd-compressed; fleche was built without the `zstd` feature")]
    ZstdDisabled,
}

/// The tag of an entry: see the module docs.
fn tag(key: Option<&SigningKey>, head: &[u8], address: &Digest, payload: &[u8]) -> [u8; 32] {
    match key {
        Some(k) => integrity::mac(k.bytes(), head, address, payload),
        None => {
            let mut t = [0u8; 32];
            t[..16].copy_from_slice(&integrity::checksum(head, address, payload).to_le_bytes());
            t
        }
    }
}

/// Wraps `payload`, stored at `address`: compressed with zstd at `level` when `compress` is set,
/// signed with `key` when given.
///
/// # Errors
///
/// [`SealError::Compress`] when the compressor fails; [`SealError::ZstdDisabled`] when
/// `compress` is set in a build without the `zstd` feature.
pub fn seal(
    payload: &[u8],
    address: &Digest,
    compress: Option<i32>,
    key: Option<&SigningKey>,
) -> Result<Vec<u8>, SealError> {
    let (header, stored) = seal_parts(payload, address, compress, key)?;
    let mut out = Vec::with_capacity(HEADER + stored.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&stored);
    Ok(out)
}

/// [`seal`] as its header and its stored payload, so a writer can write both without copying a
/// large payload into one buffer first. The payload is borrowed unless it was compressed.
///
/// # Errors
///
/// [`SealError::Compress`] when the compressor fails; [`SealError::ZstdDisabled`] when
/// `compress` is set in a build without the `zstd` feature.
pub fn seal_parts<'a>(
    payload: &'a [u8],
    address: &Digest,
    compress: Option<i32>,
    key: Option<&SigningKey>,
) -> Result<([u8; HEADER], std::borrow::Cow<'a, [u8]>), SealError> {
    let (flags_z, stored) = match compress {
        Some(level) => (
            FLAG_ZSTD,
            std::borrow::Cow::Owned(compress_payload(payload, level)?),
        ),
        None => (0, std::borrow::Cow::Borrowed(payload)),
    };
    let flags = flags_z | if key.is_some() { FLAG_SIGNED } else { 0 };
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&MAGIC);
    header[4] = VERSION;
    header[5] = flags;
    header[8..16].copy_from_slice(&(stored.len() as u64).to_le_bytes());
    header[16..24].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    header[24..56].copy_from_slice(address.as_bytes());
    let t = tag(key, &header[..24], address, &stored);
    header[56..].copy_from_slice(&t);
    Ok((header, stored))
}

/// Checks and unwraps the entry stored at `address`. With `keys` empty, only unsigned entries
/// open; otherwise only entries signed by one of `keys`. No payload larger than `max_size`
/// (stored or decompressed) is accepted, and nothing larger than the entry itself is allocated
/// before its tag verifies.
///
/// # Errors
///
/// What is wrong with the entry.
pub fn open(
    bytes: &[u8],
    address: &Digest,
    keys: &[SigningKey],
    max_size: u64,
) -> Result<Vec<u8>, EnvelopeError> {
    let (flags, original, rest) = check(bytes, address, keys, max_size)?;
    if flags & FLAG_ZSTD == 0 {
        return Ok(rest.to_vec());
    }
    decompress_payload(rest, original)
}

/// Like [`open`], taking the entry's bytes by value: an uncompressed payload is moved to the
/// front of the same buffer instead of copied into a new one.
///
/// # Errors
///
/// What is wrong with the entry.
pub fn open_owned(
    mut bytes: Vec<u8>,
    address: &Digest,
    keys: &[SigningKey],
    max_size: u64,
) -> Result<Vec<u8>, EnvelopeError> {
    let (flags, original, rest) = check(&bytes, address, keys, max_size)?;
    if flags & FLAG_ZSTD != 0 {
        return decompress_payload(rest, original);
    }
    bytes.drain(..HEADER);
    Ok(bytes)
}

/// Verifies an entry; returns its flags, its original length and its stored payload.
fn check<'b>(
    bytes: &'b [u8],
    address: &Digest,
    keys: &[SigningKey],
    max_size: u64,
) -> Result<(u8, u64, &'b [u8]), EnvelopeError> {
    if bytes.len() >= 5 && bytes[..4] == MAGIC && bytes[4] < VERSION {
        return Err(EnvelopeError::OldFormat(bytes[4]));
    }
    if bytes.len() < HEADER {
        return Err(EnvelopeError::Truncated { len: bytes.len() });
    }
    let (header, rest) = bytes.split_at(HEADER);
    if header[..4] != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    if header[4] != VERSION {
        return Err(EnvelopeError::UnsupportedVersion(header[4]));
    }
    let flags = header[5];
    if flags & !(FLAG_ZSTD | FLAG_SIGNED) != 0 || header[6] != 0 || header[7] != 0 {
        return Err(EnvelopeError::UnknownFlags(flags));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if word(8) != rest.len() as u64 {
        return Err(EnvelopeError::Truncated { len: bytes.len() });
    }
    let mut stored_tag = [0u8; 32];
    stored_tag.copy_from_slice(&header[56..88]);
    if flags & FLAG_SIGNED != 0 {
        if keys.is_empty() {
            return Err(EnvelopeError::SignedWithoutKey);
        }
        let verified = keys
            .iter()
            .any(|k| integrity::same_tag(&tag(Some(k), &header[..24], address, rest), &stored_tag));
        if !verified {
            return Err(wrong_address(header, address).unwrap_or(EnvelopeError::BadSignature));
        }
    } else {
        if tag(None, &header[..24], address, rest) != stored_tag {
            return Err(wrong_address(header, address).unwrap_or(EnvelopeError::Checksum));
        }
        if !keys.is_empty() {
            return Err(EnvelopeError::Unsigned);
        }
    }
    // The tag verified over the address asked for; the one recorded must be the same.
    if let Some(wrong) = wrong_address(header, address) {
        return Err(wrong);
    }
    let original = word(16);
    if original > max_size {
        return Err(EnvelopeError::TooLarge {
            size: original,
            max: max_size,
        });
    }
    if flags & FLAG_ZSTD == 0 && original != rest.len() as u64 {
        return Err(EnvelopeError::Truncated { len: bytes.len() });
    }
    Ok((flags, original, rest))
}

/// Checks an uncompressed entry while its payload is read, without holding it: the header is
/// checked up front, the tag once every payload byte has been fed to [`Verifier::update`].
pub(crate) struct Verifier {
    tagger: Tagger,
    expected: [u8; 32],
}

enum Tagger {
    Checksum(Box<xxhash_rust::xxh3::Xxh3>),
    /// One MAC per configured key: the entry verifies if any of them matches.
    Keyed(Vec<blake3::Hasher>),
}

impl Verifier {
    /// The verifier of the entry whose header is `header` and whose stored payload is
    /// `stored` bytes long, at `address`. Only an uncompressed entry of this version, of this
    /// address, within `max_size` and signed as `keys` require, gets one; for anything else
    /// [`open`] says what is wrong.
    pub(crate) fn new(
        header: &[u8; HEADER],
        address: &Digest,
        keys: &[SigningKey],
        max_size: u64,
        stored: u64,
    ) -> Result<Self, EnvelopeError> {
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let flags = header[5];
        let signed = flags & FLAG_SIGNED != 0;
        let fits = header[..4] == MAGIC
            && header[4] == VERSION
            && flags & !FLAG_SIGNED == 0
            && header[6..8] == [0, 0]
            && word(8) == stored
            && word(16) == stored
            && stored <= max_size
            && header[24..56] == *address.as_bytes()
            && signed != keys.is_empty();
        if !fits {
            return Err(EnvelopeError::Checksum);
        }
        let mut expected = [0u8; 32];
        expected.copy_from_slice(&header[56..88]);
        let context = &header[..24];
        let tagger = if signed {
            Tagger::Keyed(
                keys.iter()
                    .map(|k| {
                        let mut h = blake3::Hasher::new_keyed(k.bytes());
                        h.update(context);
                        h.update(address.as_bytes());
                        h
                    })
                    .collect(),
            )
        } else {
            let mut h = Box::new(xxhash_rust::xxh3::Xxh3::new());
            h.update(context);
            h.update(address.as_bytes());
            Tagger::Checksum(h)
        };
        Ok(Self { tagger, expected })
    }

    /// Feeds the next payload bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match &mut self.tagger {
            Tagger::Checksum(h) => h.update(bytes),
            Tagger::Keyed(hs) => {
                for h in hs {
                    h.update(bytes);
                }
            }
        }
    }

    /// Whether the payload fed verifies.
    pub(crate) fn finish(&self) -> Result<(), EnvelopeError> {
        match &self.tagger {
            Tagger::Checksum(h) => {
                let mut t = [0u8; 32];
                t[..16].copy_from_slice(&h.digest128().to_le_bytes());
                if t == self.expected {
                    Ok(())
                } else {
                    Err(EnvelopeError::Checksum)
                }
            }
            Tagger::Keyed(hs) => {
                if hs
                    .iter()
                    .any(|h| integrity::same_tag(h.finalize().as_bytes(), &self.expected))
                {
                    Ok(())
                } else {
                    Err(EnvelopeError::BadSignature)
                }
            }
        }
    }
}

/// When the tag fails and the header names another address: the entry of another key, most
/// likely copied or moved (said so, rather than "checksum mismatch").
fn wrong_address(header: &[u8], address: &Digest) -> Option<EnvelopeError> {
    let mut found = [0u8; 32];
    found.copy_from_slice(&header[24..56]);
    (found != *address.as_bytes()).then(|| EnvelopeError::WrongAddress {
        found: Digest::from_bytes(found),
    })
}

#[cfg(feature = "zstd")]
fn compress_payload(payload: &[u8], level: i32) -> Result<Vec<u8>, SealError> {
    zstd::bulk::compress(payload, level).map_err(|source| SealError::Compress { source })
}

#[cfg(not(feature = "zstd"))]
fn compress_payload(_payload: &[u8], _level: i32) -> Result<Vec<u8>, SealError> {
    Err(SealError::ZstdDisabled)
}

/// Decompresses a verified payload whose original length is `original` (at most the reader's
/// limit), streaming: the buffer grows with the bytes actually produced, and decoding stops one
/// byte past `original`, so a frame that declares or produces more cannot exhaust memory.
#[cfg(feature = "zstd")]
fn decompress_payload(stored: &[u8], original: u64) -> Result<Vec<u8>, EnvelopeError> {
    use std::io::Read;
    let fail = |e: std::io::Error| EnvelopeError::Decompress(e.to_string());
    let decoder = zstd::stream::read::Decoder::with_buffer(stored).map_err(fail)?;
    // Start small: the recorded length is only a claim until the bytes arrive.
    let start = usize::try_from(original.min(1 << 20)).unwrap_or(1 << 20);
    let mut out = Vec::with_capacity(start);
    decoder
        .take(original.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(fail)?;
    if out.len() as u64 != original {
        return Err(EnvelopeError::Decompress(format!(
            "decompressed to {}{} bytes, expected {original}",
            out.len(),
            if out.len() as u64 > original {
                " or more"
            } else {
                ""
            }
        )));
    }
    Ok(out)
}

#[cfg(not(feature = "zstd"))]
fn decompress_payload(_stored: &[u8], _original: u64) -> Result<Vec<u8>, EnvelopeError> {
    Err(EnvelopeError::ZstdDisabled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(s: &str) -> SigningKey {
        SigningKey::from_secret(s.as_bytes())
    }

    /// The address the tests store at.
    const AT: Digest = Digest::from_bytes([0xa5; 32]);
    const MAX: u64 = 1 << 20;

    fn sl(
        payload: &[u8],
        compress: Option<i32>,
        key: Option<&SigningKey>,
    ) -> Result<Vec<u8>, SealError> {
        seal(payload, &AT, compress, key)
    }

    fn op(bytes: &[u8], keys: &[SigningKey]) -> Result<Vec<u8>, EnvelopeError> {
        open(bytes, &AT, keys, MAX)
    }

    /// An entry with a valid tag over whatever header fields the test chose.
    fn forge(flags: u8, stored: &[u8], original: u64, key: Option<&SigningKey>) -> Vec<u8> {
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&MAGIC);
        header[4] = VERSION;
        header[5] = flags | if key.is_some() { FLAG_SIGNED } else { 0 };
        header[8..16].copy_from_slice(&(stored.len() as u64).to_le_bytes());
        header[16..24].copy_from_slice(&original.to_le_bytes());
        header[24..56].copy_from_slice(AT.as_bytes());
        let t = tag(key, &header[..24], &AT, stored);
        header[56..].copy_from_slice(&t);
        [&header[..], stored].concat()
    }

    #[test]
    fn the_header_is_as_documented() {
        let e = sl(b"abc", None, None).unwrap_or_default();
        assert_eq!(e.len(), HEADER + 3);
        assert_eq!(&e[..4], b"FLCH");
        assert_eq!(e[4], 2);
        assert_eq!(e[5], 0);
        assert_eq!(&e[8..16], &3u64.to_le_bytes());
        assert_eq!(&e[16..24], &3u64.to_le_bytes());
        assert_eq!(&e[24..56], AT.as_bytes());
        let sum = integrity::checksum(&e[..24], &AT, b"abc");
        assert_eq!(&e[56..72], &sum.to_le_bytes());
        assert_eq!(&e[72..88], &[0u8; 16]);
        assert_eq!(&e[88..], b"abc");
    }

    #[test]
    fn an_entry_opens_only_at_its_address() {
        let other = Digest::from_bytes([0x5a; 32]);
        for k in [None, Some(key("k"))] {
            let keys: Vec<SigningKey> = k.iter().cloned().collect();
            let e = sl(b"payload", None, k.as_ref()).unwrap_or_default();
            assert_eq!(
                open(&e, &other, &keys, MAX),
                Err(EnvelopeError::WrongAddress { found: AT })
            );
            // Rewriting the address field does not help: the tag covers the address.
            let mut moved = e.clone();
            moved[24..56].copy_from_slice(other.as_bytes());
            assert!(open(&moved, &other, &keys, MAX).is_err());
            assert_eq!(op(&e, &keys), Ok(b"payload".to_vec()));
        }
    }

    #[test]
    fn version_1_entries_are_an_old_format() {
        let mut v1 = vec![0u8; 56 + 3];
        v1[..4].copy_from_slice(&MAGIC);
        v1[4] = 1;
        assert_eq!(op(&v1, &[]), Err(EnvelopeError::OldFormat(1)));
        assert_eq!(op(&v1[..5], &[]), Err(EnvelopeError::OldFormat(1)));
    }

    #[test]
    fn lengths_beyond_the_limit_are_refused_before_allocating() {
        // A valid tag over a header that claims a terabyte.
        let bomb = forge(FLAG_ZSTD, b"\x28\xb5\x2f\xfd tiny", 1 << 40, None);
        assert_eq!(
            op(&bomb, &[]),
            Err(EnvelopeError::TooLarge {
                size: 1 << 40,
                max: MAX
            })
        );
        let big = sl(&[7u8; 2048], None, None).unwrap_or_default();
        assert!(matches!(
            open(&big, &AT, &[], 1024),
            Err(EnvelopeError::TooLarge { .. })
        ));
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn a_frame_that_inflates_past_its_recorded_length_is_cut_off() {
        // 64 MiB of zeros compress to a few KiB; the header claims 1 KiB.
        let frame = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap_or_default();
        let entry = forge(FLAG_ZSTD, &frame, 1024, None);
        let err = op(&entry, &[]);
        assert!(
            matches!(&err, Err(EnvelopeError::Decompress(m)) if m.contains("or more")),
            "{err:?}"
        );
        // And one that yields less than it claims.
        let short = zstd::bulk::compress(b"abc", 3).unwrap_or_default();
        assert!(matches!(
            op(&forge(FLAG_ZSTD, &short, 100, None), &[]),
            Err(EnvelopeError::Decompress(_))
        ));
    }

    /// zstd level 1 when this build compresses, else no compression.
    const LEVEL: Option<i32> = if cfg!(feature = "zstd") {
        Some(1)
    } else {
        None
    };

    #[cfg(feature = "zstd")]
    #[test]
    fn round_trips_in_every_mode() {
        let payload = b"hello hello hello hello hello hello".repeat(10);
        for compress in [None, Some(3)] {
            let plain = sl(&payload, compress, None).unwrap_or_default();
            assert_eq!(op(&plain, &[]), Ok(payload.clone()));
            let signed = sl(&payload, compress, Some(&key("a"))).unwrap_or_default();
            assert_eq!(op(&signed, &[key("a")]), Ok(payload.clone()));
        }
        let compressed = sl(&payload, Some(3), None).unwrap_or_default();
        assert!(
            compressed.len() < payload.len(),
            "zstd shrinks repetitive data"
        );
    }

    #[test]
    fn signatures_are_checked() {
        let signed = sl(b"x", None, Some(&key("old"))).unwrap_or_default();
        assert_eq!(op(&signed, &[key("new")]), Err(EnvelopeError::BadSignature));
        assert_eq!(op(&signed, &[key("new"), key("old")]), Ok(b"x".to_vec()));
        assert_eq!(op(&signed, &[]), Err(EnvelopeError::SignedWithoutKey));
        let unsigned = sl(b"x", None, None).unwrap_or_default();
        assert_eq!(op(&unsigned, &[key("old")]), Err(EnvelopeError::Unsigned));
        let mut tampered = signed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            op(&tampered, &[key("old")]),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn damage_is_detected() {
        let good = sl(b"payload", LEVEL, None).unwrap_or_default();
        assert_eq!(op(&[], &[]), Err(EnvelopeError::Truncated { len: 0 }));
        assert!(matches!(
            op(&good[..good.len() - 1], &[]),
            Err(EnvelopeError::Truncated { .. })
        ));
        let mut flipped = good.clone();
        flipped[HEADER] ^= 0xff;
        assert_eq!(op(&flipped, &[]), Err(EnvelopeError::Checksum));
        let mut newer = good.clone();
        newer[4] = 9;
        assert_eq!(op(&newer, &[]), Err(EnvelopeError::UnsupportedVersion(9)));
        assert_eq!(op(&[b'g'; 100], &[]), Err(EnvelopeError::BadMagic));
    }

    #[test]
    fn hex_keys() {
        assert!(SigningKey::from_hex("00112233445566778899aabbccddeeff").is_ok());
        assert!(SigningKey::from_hex("0011").is_err());
        assert!(SigningKey::from_hex("zz112233445566778899aabbccddeeff").is_err());
        assert_eq!(
            SigningKey::from_hex("00112233445566778899AABBCCDDEEFF"),
            SigningKey::from_hex("00112233445566778899aabbccddeeff")
        );
    }

    #[cfg(not(feature = "zstd"))]
    #[test]
    fn compression_needs_the_feature() {
        assert!(matches!(
            sl(b"x", Some(3), None),
            Err(SealError::ZstdDisabled)
        ));
        assert!(sl(b"x", None, None).is_ok());
        // A well-formed compressed entry, as a build with zstd writes it.
        let entry = forge(FLAG_ZSTD, b"not really zstd", 100, None);
        let err = op(&entry, &[]);
        assert_eq!(err, Err(EnvelopeError::ZstdDisabled));
        let message = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            message,
            "entry is zstd-compressed; fleche was built without the `zstd` feature"
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = op(&bytes, &[]);
            let _ = op(&bytes, &[key("k")]);
        }

        #[test]
        fn random_damage_is_an_error_or_harmless(
            payload in proptest::collection::vec(any::<u8>(), 0..256),
            at in any::<prop::sample::Index>(),
            xor in 1u8..,
            compress in any::<bool>(),
            signed in any::<bool>(),
        ) {
            let k = key("k");
            let keys = if signed { vec![k.clone()] } else { vec![] };
            let good = sl(&payload, LEVEL.filter(|_| compress), signed.then_some(&k)).unwrap_or_default();
            let mut bad = good.clone();
            let i = at.index(bad.len());
            bad[i] ^= xor;
            prop_assert!(op(&bad, &keys).is_err());
            // Forged lengths: the header is covered by the tag.
            let mut forged = good;
            forged[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
            prop_assert!(op(&forged, &keys).is_err());
        }
    }
}

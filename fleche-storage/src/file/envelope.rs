//! The envelope around every entry the file backend writes (`docs/format.md`, "File envelope").
//!
//! ```text
//! offset  size  field
//!      0     4  magic "FLCH"
//!      4     1  envelope version (1)
//!      5     1  flags: bit 0 = payload is zstd-compressed, bit 1 = tag is a keyed MAC
//!      6     2  reserved, zero
//!      8     8  stored payload length (u64 LE)
//!     16     8  original payload length (u64 LE; equal to the stored length when uncompressed)
//!     24    32  tag: blake3(bytes 0..24 ++ stored payload), or, when signed,
//!               blake3_keyed(signing key, bytes 0..24 ++ stored payload)
//!     56     …  stored payload
//! ```
//!
//! Decoding never trusts a length before the tag has been checked against the whole entry, so
//! random or truncated bytes cannot make it allocate more than the entry's own size.

use std::fmt;

/// The first bytes of every entry.
pub const MAGIC: [u8; 4] = *b"FLCH";
/// The envelope version this code writes and reads.
pub const VERSION: u8 = 1;
/// Header size in bytes.
pub const HEADER: usize = 56;

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

fn tag(key: Option<&SigningKey>, header: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = match key {
        Some(k) => blake3::Hasher::new_keyed(&k.0),
        None => blake3::Hasher::new(),
    };
    h.update(header);
    h.update(payload);
    *h.finalize().as_bytes()
}

/// Wraps `payload`: compressed with zstd at `level` when `compress` is set, signed with `key`
/// when given.
///
/// # Errors
///
/// [`SealError::Compress`] when the compressor fails; [`SealError::ZstdDisabled`] when
/// `compress` is set in a build without the `zstd` feature.
pub fn seal(
    payload: &[u8],
    compress: Option<i32>,
    key: Option<&SigningKey>,
) -> Result<Vec<u8>, SealError> {
    let (header, stored) = seal_parts(payload, compress, key)?;
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
    let t = tag(key, &header[..24], &stored);
    header[24..].copy_from_slice(&t);
    Ok((header, stored))
}

/// Checks and unwraps an entry. With `keys` empty, only unsigned entries open; otherwise only
/// entries signed by one of `keys`.
///
/// # Errors
///
/// What is wrong with the entry.
pub fn open(bytes: &[u8], keys: &[SigningKey]) -> Result<Vec<u8>, EnvelopeError> {
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
    let stored_tag = &header[24..56];
    if flags & FLAG_SIGNED != 0 {
        if keys.is_empty() {
            return Err(EnvelopeError::SignedWithoutKey);
        }
        let verified = keys.iter().any(|k| {
            let expected = blake3::Hash::from(tag(Some(k), &header[..24], rest));
            // Constant-time comparison through blake3::Hash's PartialEq.
            <[u8; 32]>::try_from(stored_tag)
                .map(|t| expected == blake3::Hash::from(t))
                .unwrap_or(false)
        });
        if !verified {
            return Err(EnvelopeError::BadSignature);
        }
    } else {
        if tag(None, &header[..24], rest) != stored_tag {
            return Err(EnvelopeError::Checksum);
        }
        if !keys.is_empty() {
            return Err(EnvelopeError::Unsigned);
        }
    }
    let original = word(16);
    if flags & FLAG_ZSTD == 0 {
        if original != rest.len() as u64 {
            return Err(EnvelopeError::Truncated { len: bytes.len() });
        }
        return Ok(rest.to_vec());
    }
    let capacity = usize::try_from(original)
        .map_err(|_| EnvelopeError::Decompress(format!("recorded length {original} too large")))?;
    let out = decompress_payload(rest, capacity)?;
    if out.len() != capacity {
        return Err(EnvelopeError::Decompress(format!(
            "decompressed to {} bytes, expected {capacity}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(feature = "zstd")]
fn compress_payload(payload: &[u8], level: i32) -> Result<Vec<u8>, SealError> {
    zstd::bulk::compress(payload, level).map_err(|source| SealError::Compress { source })
}

#[cfg(not(feature = "zstd"))]
fn compress_payload(_payload: &[u8], _level: i32) -> Result<Vec<u8>, SealError> {
    Err(SealError::ZstdDisabled)
}

#[cfg(feature = "zstd")]
fn decompress_payload(stored: &[u8], capacity: usize) -> Result<Vec<u8>, EnvelopeError> {
    zstd::bulk::decompress(stored, capacity).map_err(|e| EnvelopeError::Decompress(e.to_string()))
}

#[cfg(not(feature = "zstd"))]
fn decompress_payload(_stored: &[u8], _capacity: usize) -> Result<Vec<u8>, EnvelopeError> {
    Err(EnvelopeError::ZstdDisabled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(s: &str) -> SigningKey {
        SigningKey::from_secret(s.as_bytes())
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
            let plain = seal(&payload, compress, None).unwrap_or_default();
            assert_eq!(open(&plain, &[]), Ok(payload.clone()));
            let signed = seal(&payload, compress, Some(&key("a"))).unwrap_or_default();
            assert_eq!(open(&signed, &[key("a")]), Ok(payload.clone()));
        }
        let compressed = seal(&payload, Some(3), None).unwrap_or_default();
        assert!(
            compressed.len() < payload.len(),
            "zstd shrinks repetitive data"
        );
    }

    #[test]
    fn signatures_are_checked() {
        let signed = seal(b"x", None, Some(&key("old"))).unwrap_or_default();
        assert_eq!(
            open(&signed, &[key("new")]),
            Err(EnvelopeError::BadSignature)
        );
        assert_eq!(open(&signed, &[key("new"), key("old")]), Ok(b"x".to_vec()));
        assert_eq!(open(&signed, &[]), Err(EnvelopeError::SignedWithoutKey));
        let unsigned = seal(b"x", None, None).unwrap_or_default();
        assert_eq!(open(&unsigned, &[key("old")]), Err(EnvelopeError::Unsigned));
        let mut tampered = signed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            open(&tampered, &[key("old")]),
            Err(EnvelopeError::BadSignature)
        );
    }

    #[test]
    fn damage_is_detected() {
        let good = seal(b"payload", LEVEL, None).unwrap_or_default();
        assert_eq!(open(&[], &[]), Err(EnvelopeError::Truncated { len: 0 }));
        assert!(matches!(
            open(&good[..good.len() - 1], &[]),
            Err(EnvelopeError::Truncated { .. })
        ));
        let mut flipped = good.clone();
        flipped[HEADER] ^= 0xff;
        assert_eq!(open(&flipped, &[]), Err(EnvelopeError::Checksum));
        let mut newer = good.clone();
        newer[4] = 9;
        assert_eq!(open(&newer, &[]), Err(EnvelopeError::UnsupportedVersion(9)));
        assert_eq!(
            open(
                b"garbage garbage garbage garbage garbage garbage garbage!!",
                &[]
            ),
            Err(EnvelopeError::BadMagic)
        );
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
            seal(b"x", Some(3), None),
            Err(SealError::ZstdDisabled)
        ));
        assert!(seal(b"x", None, None).is_ok());
        // A well-formed compressed entry, as a build with zstd writes it.
        let stored = b"not really zstd";
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&MAGIC);
        header[4] = VERSION;
        header[5] = FLAG_ZSTD;
        header[8..16].copy_from_slice(&(stored.len() as u64).to_le_bytes());
        header[16..24].copy_from_slice(&100u64.to_le_bytes());
        let t = tag(None, &header[..24], stored);
        header[24..].copy_from_slice(&t);
        let entry = [&header[..], &stored[..]].concat();
        let err = open(&entry, &[]);
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
            let _ = open(&bytes, &[]);
            let _ = open(&bytes, &[key("k")]);
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
            let good = seal(&payload, LEVEL.filter(|_| compress), signed.then_some(&k)).unwrap_or_default();
            let mut bad = good.clone();
            let i = at.index(bad.len());
            bad[i] ^= xor;
            prop_assert!(open(&bad, &keys).is_err());
            // Forged lengths: the header is covered by the tag.
            let mut forged = good;
            forged[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
            prop_assert!(open(&forged, &keys).is_err());
        }
    }
}

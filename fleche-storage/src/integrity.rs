//! What every persistent entry carries to prove it is the entry of its address
//! (`docs/format.md`, "Integrity"): a checksum over the address and the stored payload.
//!
//! - Unsigned caches use xxh3-128, which is fast enough for large results and catches every
//!   accidental fault: bit flips, truncation, and entries swapped or copied to another address
//!   (the address is part of what is summed).
//! - Signed caches use blake3 keyed with the signing key over the same bytes: a MAC, so only a
//!   holder of the key can make an entry that verifies, at this address and no other.
//!
//! A checksum is no defence against someone who can write the cache directory; a signature is.

use crate::Digest;

/// The largest entry a cache reads or writes unless configured otherwise (`max_entry_size`): no
/// entry, decompressed or reassembled, is allowed to grow past it, so no file in a cache
/// directory can make a process allocate more.
pub const DEFAULT_MAX_ENTRY_SIZE: u64 = 1 << 30;

/// The unsigned checksum of `payload` stored at `address`, after the header bytes `context`.
#[must_use]
pub fn checksum(context: &[u8], address: &Digest, payload: &[u8]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(context);
    h.update(address.as_bytes());
    h.update(payload);
    h.digest128()
}

/// The keyed blake3 MAC of `payload` stored at `address` under `key`, after the header bytes
/// `context`.
#[must_use]
pub fn mac(key: &[u8; 32], context: &[u8], address: &Digest, payload: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(context);
    h.update(address.as_bytes());
    h.update(payload);
    *h.finalize().as_bytes()
}

/// Compares two tags in time independent of where they differ.
#[must_use]
pub fn same_tag(a: &[u8; 32], b: &[u8; 32]) -> bool {
    blake3::Hash::from(*a) == blake3::Hash::from(*b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_part_of_the_checksum() {
        let a = Digest::from_bytes([1; 32]);
        let b = Digest::from_bytes([2; 32]);
        assert_ne!(
            checksum(b"h", &a, b"payload"),
            checksum(b"h", &b, b"payload")
        );
        assert_ne!(
            checksum(b"h", &a, b"payload"),
            checksum(b"h", &a, b"payloae")
        );
        assert_ne!(checksum(b"h", &a, b"p"), checksum(b"i", &a, b"p"));
        assert_eq!(
            checksum(b"h", &a, b"payload"),
            checksum(b"h", &a, b"payload")
        );
        let k = [7u8; 32];
        assert_ne!(mac(&k, b"h", &a, b"p"), mac(&k, b"h", &b, b"p"));
        assert!(same_tag(&mac(&k, b"h", &a, b"p"), &mac(&k, b"h", &a, b"p")));
    }
}

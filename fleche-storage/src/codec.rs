//! Decoding stored MessagePack, bounded: nesting is capped so a crafted or damaged entry cannot
//! overflow the stack (a rayon worker's 2 MiB in a debug build), and no declared length is
//! allocated before its bytes are there (serde preallocates at most a small, fixed amount;
//! `rmpv` grows collections as elements arrive).

use serde::de::DeserializeOwned;

/// How deeply stored values and records may nest.
pub const MAX_DECODE_DEPTH: usize = 128;

/// Decodes MessagePack `bytes` as `T`, nesting at most [`MAX_DECODE_DEPTH`] deep.
///
/// # Errors
///
/// Bytes that are not a `T`, or nest deeper.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(MAX_DECODE_DEPTH);
    T::deserialize(&mut de)
}

/// Parses MessagePack `bytes` as a value tree, nesting at most [`MAX_DECODE_DEPTH`] deep.
///
/// # Errors
///
/// Bytes that are not MessagePack, or nest deeper.
pub fn parse(bytes: &[u8]) -> Result<rmpv::Value, rmpv::decode::Error> {
    rmpv::decode::read_value_with_max_depth(&mut &bytes[..], MAX_DECODE_DEPTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `depth` nested one-element arrays around a 0.
    fn nested(depth: usize) -> Vec<u8> {
        let mut v = vec![0x91; depth];
        v.push(0);
        v
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // Run where a rayon worker would: on a 2 MiB stack.
        let t = std::thread::Builder::new().stack_size(2 << 20).spawn(|| {
            let deep = nested(100_000);
            (
                decode::<serde_json::Value>(&deep).is_err(),
                parse(&deep).is_err(),
                decode::<serde_json::Value>(&nested(100)).is_ok(),
            )
        });
        let joined = t.ok().and_then(|h| h.join().ok());
        assert_eq!(joined, Some((true, true, true)));
    }

    #[test]
    fn declared_lengths_are_not_allocated_up_front() {
        // An array claiming 2^32 - 1 elements, a string claiming 4 GiB: a few bytes each.
        assert!(decode::<Vec<u64>>(&[0xdd, 0xff, 0xff, 0xff, 0xff, 1]).is_err());
        assert!(decode::<String>(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']).is_err());
        assert!(decode::<Vec<u8>>(&[0xc6, 0xff, 0xff, 0xff, 0xff, 1]).is_err());
        assert!(parse(&[0xdd, 0xff, 0xff, 0xff, 0xff, 1]).is_err());
        assert!(parse(&[0xdf, 0xff, 0xff, 0xff, 0xff, 1]).is_err());
    }
}

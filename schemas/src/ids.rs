//! Deterministic ids. Every output row and alert is named by a hash of what produced it, so a
//! replay after a crash writes the same ids and downstream deduplication makes it harmless.

use sha2::{Digest, Sha256};

/// A 128-bit id, hex encoded, from the given parts. Parts are length-prefixed so that
/// `("ab", "c")` and `("a", "bc")` differ.
pub fn stable_id(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_parts_same_id_and_boundaries_matter() {
        assert_eq!(stable_id(&[b"a", b"bc"]), stable_id(&[b"a", b"bc"]));
        assert_ne!(stable_id(&[b"ab", b"c"]), stable_id(&[b"a", b"bc"]));
        assert_eq!(stable_id(&[b"x"]).len(), 32);
    }
}

//! Deterministic ids. Every output row and alert is named by a hash of what produced it, so a
//! replay after a crash writes the same ids and downstream deduplication makes it harmless.

use sha2::{Digest, Sha256};

/// A 128-bit id, hex encoded, from the given parts. Parts are length-prefixed so that
/// `("ab", "c")` and `("a", "bc")` differ.
pub fn stable_id(parts: &[&[u8]]) -> String {
    hex::encode(stable_id_bytes(parts))
}

/// The 16 bytes [`stable_id`] writes in hex, for ids kept in binary (episode ids in the state).
pub fn stable_id_bytes(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_parts_same_id_and_boundaries_matter() {
        assert_eq!(stable_id(&[b"a", b"bc"]), stable_id(&[b"a", b"bc"]));
        assert_ne!(stable_id(&[b"ab", b"c"]), stable_id(&[b"a", b"bc"]));
        assert_eq!(stable_id(&[b"x"]).len(), 32);
        assert_eq!(stable_id(&[b"x"]), hex::encode(stable_id_bytes(&[b"x"])));
        // Ids are persisted (ClickHouse rows, the changelog): the function must never change
        // (the value is SHA-256 of the length-prefixed part, as Python computes it).
        assert_eq!(stable_id(&[b"vigil"]), "4cd6b7581e047ad3b98f750e96fcb05f");
    }
}

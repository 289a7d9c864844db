//! Resident identity card numbers (GB 11643-1999): 17 digits and an ISO 7064 MOD 11-2 check
//! character. A wrong check character is a typing error the edge refuses rather than
//! pseudonymising into a second, phantom patient.

/// The check character of the first 17 digits.
pub fn check_char(body: &str) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
    let sum: u32 = body
        .chars()
        .zip(WEIGHTS)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    CHECK[(sum % 11) as usize]
}

/// Whether `id` is 17 digits followed by the right check character.
pub fn is_valid(id: &str) -> bool {
    // Bytes, not characters: 18 bytes may end inside a multi-byte character.
    let bytes = id.as_bytes();
    bytes.len() == 18
        && bytes[..17].iter().all(u8::is_ascii_digit)
        && bytes[17].is_ascii()
        && id.get(..17).map(check_char) == Some(bytes[17].to_ascii_uppercase() as char)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_example_and_typos() {
        assert_eq!(check_char("11010519491231002"), 'X');
        assert!(is_valid("11010519491231002X"));
        assert!(is_valid("11010519491231002x"));
        assert!(!is_valid("11010519491231002Y"));
        assert!(!is_valid("11010519491231003X"));
        assert!(!is_valid("1101051949123100"));
        assert!(!is_valid("王芳"));
        // 18 bytes ending in the middle of a multi-byte character, and one ending in it.
        assert!(!is_valid("123456789012345王"));
        assert!(!is_valid("1234567890123456王"));
        assert!(!is_valid("11010519491231002王"));
    }
}

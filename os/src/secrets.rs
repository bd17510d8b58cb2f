//! Random secrets from the operating system's random source: bytes, and opaque tokens (admin
//! tokens, the state feed's shared secret) as hex.

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS RNG failing means the machine cannot make secrets at all; there is no fallback.
    getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("the OS random source failed: {e}"));
    bytes
}

/// A new opaque token (admin token, state-feed secret): 256 random bits, 64 hex digits.
pub fn new_token() -> String {
    hex::encode(random_bytes::<32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_random_bits_in_hex() {
        let token = new_token();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(new_token(), token);
        assert_ne!(random_bytes::<16>(), [0u8; 16]);
    }
}

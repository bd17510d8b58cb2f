//! Tokens signed with fixed keys, for the tests of the JWT checks (here, in [`crate::auth`] and
//! in [`crate::exchange`]).

use chrono::{DateTime, Utc};
use jwt_compact::alg::Ed25519;
use jwt_compact::{AlgorithmExt, Claims, Header};

use super::decode_hex;

/// Two fixed Ed25519 key pairs (seeds 0x07… and 0x09…): secret key hex, public key hex.
pub const KEY_A: (&str, &str) = (
    "0707070707070707070707070707070707070707070707070707070707070707ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c",
    "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c",
);
/// The second pair.
pub const KEY_B: (&str, &str) = (
    "0909090909090909090909090909090909090909090909090909090909090909fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618",
    "fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618",
);
/// The tests' clock.
pub const NOW: i64 = 1_800_000_000;

type SecretKey = <Ed25519 as jwt_compact::Algorithm>::SigningKey;

#[derive(serde::Serialize)]
struct Custom<'a> {
    sub: &'a str,
    ver: i64,
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// A token of `sub` at token version 3.
pub fn sign(secret_hex: &str, kid: &str, sub: &str, exp: Option<i64>, nbf: Option<i64>) -> String {
    sign_at_version(secret_hex, kid, sub, 3, exp, nbf)
}

/// A token of `sub` at token version `ver`.
pub fn sign_at_version(
    secret_hex: &str,
    kid: &str,
    sub: &str,
    ver: i64,
    exp: Option<i64>,
    nbf: Option<i64>,
) -> String {
    let key = SecretKey::from_slice(&decode_hex(secret_hex).unwrap()).unwrap();
    let mut claims = Claims::new(Custom { sub, ver });
    claims.expiration = exp.map(at);
    claims.not_before = nbf.map(at);
    claims.issued_at = Some(at(NOW - 10));
    Ed25519.token(&Header::empty().with_key_id(kid), &claims, &key).unwrap()
}

/// Base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

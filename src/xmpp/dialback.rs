//! Server Dialback keys (XEP-0185) and element builders (XEP-0220).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::element::Element;
use super::ns;

/// XEP-0185 §2: `key = HMAC-SHA256(SHA256(secret), receiving SP originating SP stream-id)`,
/// hex-encoded; the HMAC key is the *hex* form of SHA256(secret), as in the XEP's example.
/// No communication between servers is needed to set the secret up (DB-15).
pub fn key(secret: &str, receiving: &str, originating: &str, stream_id: &str) -> String {
    let hashed = hex::encode(Sha256::digest(secret.as_bytes()));
    // Hmac accepts keys of any length, so new_from_slice cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(hashed.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(receiving.as_bytes());
    mac.update(b" ");
    mac.update(originating.as_bytes());
    mac.update(b" ");
    mac.update(stream_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time comparison of two keys, so a verifier leaks nothing through timing.
pub fn keys_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim().as_bytes(), b.trim().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `<db:result from to>key</db:result>` (XEP-0220 §2.1.1).
pub fn result_request(from: &str, to: &str, key: &str) -> Element {
    Element::new(ns::DIALBACK, "result")
        .with_prefix("db")
        .with_attr("from", from)
        .with_attr("to", to)
        .with_text(key)
}

/// `<db:verify from to id>key</db:verify>` (XEP-0220 §2.1.2).
pub fn verify_request(from: &str, to: &str, id: &str, key: &str) -> Element {
    Element::new(ns::DIALBACK, "verify")
        .with_prefix("db")
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("id", id)
        .with_text(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of XEP-0185 §3 ("Example").
    #[test]
    fn xep0185_example() {
        assert_eq!(
            key(
                "s3cr3tf0rd14lb4ck",
                "xmpp.example.com",
                "example.org",
                "D60000229F"
            ),
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
        );
    }

    #[test]
    fn keys_differ_per_stream_and_pair() {
        let a = key("s", "a.test", "b.test", "1");
        assert_ne!(a, key("s", "a.test", "b.test", "2"));
        assert_ne!(a, key("s", "b.test", "a.test", "1"));
        assert!(keys_equal(&a, &format!(" {a}\n")));
        assert!(!keys_equal(&a, &key("t", "a.test", "b.test", "1")));
    }
}

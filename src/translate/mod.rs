//! Pure SIP/SIMPLE ⇄ XMPP mappings: the translating core of a gateway (RFC 7247,
//! RFC 8048, RFC 7572, RFC 3863).
//!
//! Nothing here knows a socket, a clock or a SIP stack. Every function maps *values*
//! (addresses, error codes, presence states, message fields) between small plain data
//! types, and the subscription state machines take time as an argument and return
//! actions for a driver to perform (sans-IO, see STYLE.md §1).
//!
//! - [`address`]: RFC 7247 §6 URI ⇄ JID mapping.
//! - [`error`]: RFC 7247 §7 error condition ⇄ response code tables.

pub mod address;
pub mod error;
pub mod message;
pub mod presence;
pub mod subscription;
pub mod xml;

//! XMPP: the sans-IO core. Nothing here touches a socket or reads a clock; time comes in
//! as an argument and I/O leaves as output values (see README "Architecture").

pub mod codec;
pub mod component;
pub mod conditions;
pub mod dialback;
pub mod element;
pub mod jid;
pub mod ns;
pub mod s2s;

//! Namespace names used on S2S and component streams.

/// RFC 6120 §4.8.1: the stream namespace.
pub const STREAM: &str = "http://etherx.jabber.org/streams";
/// RFC 6120 §4.8.2: content namespace of server-to-server streams.
pub const SERVER: &str = "jabber:server";
/// RFC 6120 §4.8.2: content namespace of client streams (must not appear on S2S).
pub const CLIENT: &str = "jabber:client";
/// XEP-0114 §3: content namespace of component streams.
pub const COMPONENT_ACCEPT: &str = "jabber:component:accept";
/// XEP-0220 §2: dialback elements.
pub const DIALBACK: &str = "jabber:server:dialback";
/// XEP-0220 §2.4.2: dialback stream feature.
pub const DIALBACK_FEATURE: &str = "urn:xmpp:features:dialback";
/// RFC 6120 §4.9.2: stream error conditions.
pub const STREAMS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// RFC 6120 §8.3.2: stanza error conditions.
pub const STANZAS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// RFC 6120 §5: STARTTLS.
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// RFC 6120 §6: SASL.
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// XEP-0199: ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0030: service discovery, info.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

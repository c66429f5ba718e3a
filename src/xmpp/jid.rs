//! JIDs (RFC 7622). PLACEHOLDER: implemented in the codec branch.

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jid {
    pub local: Option<String>,
    pub domain: String,
    pub resource: Option<String>,
}

//! placeholder
use super::Normaliser;
impl Normaliser<'_> {
    pub(super) fn sip_message(
        &mut self,
        _m: &crate::sip::Message,
        _prefix: &str,
        _out: &mut String,
    ) {
    }
}

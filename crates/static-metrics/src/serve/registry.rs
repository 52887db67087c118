//! The runtime's [`Registry`] as an [`Exposition`] the metrics server can serve.

use super::{EncodeError, Exposition, NameFilter};
use crate::encode::Format;
use crate::Registry;

impl Exposition for Registry {
    fn encode(
        &self,
        format: Format,
        filter: &NameFilter,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        if filter.is_all() {
            Registry::encode(self, format, out);
        } else {
            self.encode_where(format, |name| filter.allows(name), out);
        }
        Ok(())
    }
}

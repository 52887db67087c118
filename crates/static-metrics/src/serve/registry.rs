//! The runtime's [`Registry`] as an [`Exposition`] the metrics server can serve.

use super::{EncodeError, Exposition, NameFilter};
use crate::encode::{EncodeOptions, Format};
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

    fn encode_with(
        &self,
        format: Format,
        options: EncodeOptions,
        filter: &NameFilter,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        Registry::encode_with(self, format, options, |name| filter.allows(name), out);
        Ok(())
    }
}

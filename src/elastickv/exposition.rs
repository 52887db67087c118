//! The elastickv [`Registry`] as an [`Exposition`] the metrics server can serve.

use static_metrics::encode::{EncodeOptions, Format};
use static_metrics::serve::{EncodeError, Exposition, NameFilter};

use super::Registry;

impl Exposition for Registry {
    fn encode(
        &self,
        format: Format,
        filter: &NameFilter,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        Exposition::encode(self.metrics(), format, filter, out)
    }

    // Forwarded too: the trait's default would drop the options (start timestamps).
    fn encode_with(
        &self,
        format: Format,
        options: EncodeOptions,
        filter: &NameFilter,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        Exposition::encode_with(self.metrics(), format, options, filter, out)
    }
}

//! The elastickv [`Registry`] as an [`Exposition`] the metrics server can serve.

use static_metrics::encode::Format;
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
}

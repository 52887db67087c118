//! S3 observers (upstream `monitoring/s3.go` at `d9a031d`): PUT admission (in-flight bytes,
//! rejections, waits), blob-offload decisions and chunk-blob health.
//!
//! Label values outside upstream's fixed sets become `unknown`, negative gauges and waits are
//! clamped to 0, as upstream does.

use std::fmt;
use std::time::Duration;

use crate::manifest::domain::{
    S3AdmissionProtocol, S3AdmissionStage, S3BackfillResult, S3OffloadMode, S3OffloadReason,
};
use crate::manifest::family;
use crate::storage::Store;

/// Records the nine `elastickv_s3_*` families. Obtained from
/// [`Registry::s3_observer`](crate::Registry::s3_observer), which creates the five
/// label-less series at 0 (they exist from start-up upstream); the `Default` value drops
/// every observation.
#[derive(Clone, Copy, Default)]
pub struct S3Observer {
    store: Option<&'static Store>,
}

fn stage(s: &str) -> S3AdmissionStage {
    S3AdmissionStage::from_label(s).unwrap_or(S3AdmissionStage::Unknown)
}

fn protocol(p: &str) -> S3AdmissionProtocol {
    S3AdmissionProtocol::from_label(p).unwrap_or(S3AdmissionProtocol::Unknown)
}

impl S3Observer {
    pub(crate) fn new(store: &'static Store) -> Self {
        store.gauge(family::elastickv_s3_put_admission_inflight_bytes());
        store.counter(family::elastickv_s3_chunkblob_replication_degraded_total());
        store.counter(family::elastickv_s3_chunkblob_sha_mismatch_total());
        store.counter(family::elastickv_s3_chunkblob_unrecoverable_total());
        store.gauge(family::elastickv_s3_chunkblob_backfill_queue_depth());
        S3Observer { store: Some(store) }
    }

    /// Sets the admitted, not yet released PUT body bytes (negative: 0).
    #[inline]
    pub fn observe_put_admission_inflight(&self, bytes: i64) {
        if let Some(store) = self.store {
            store
                .gauge(family::elastickv_s3_put_admission_inflight_bytes())
                .set(bytes.max(0));
        }
    }

    /// Counts one PUT refused at admission `stage` (`prereserve`, `perbatch`) for `protocol`
    /// (`fixed-length`, `chunked`); anything else is `unknown`.
    #[inline]
    pub fn observe_put_admission_rejection(&self, stage_label: &str, protocol_label: &str) {
        if let Some(store) = self.store {
            store
                .counter(family::elastickv_s3_put_admission_rejections_total(
                    stage(stage_label),
                    protocol(protocol_label),
                ))
                .inc();
        }
    }

    /// Records how long a PUT waited for an admission slot.
    #[inline]
    pub fn observe_put_admission_wait(
        &self,
        stage_label: &str,
        protocol_label: &str,
        wait: Duration,
    ) {
        if let Some(store) = self.store {
            store
                .histogram(family::elastickv_s3_put_admission_wait_seconds(
                    stage(stage_label),
                    protocol(protocol_label),
                ))
                .observe_duration(wait);
        }
    }

    /// Counts one blob-offload decision (`legacy`/`offload`, and its reason); anything else is
    /// `unknown`.
    #[inline]
    pub fn observe_blob_offload_decision(&self, mode: &str, reason: &str) {
        if let Some(store) = self.store {
            let mode = S3OffloadMode::from_label(mode).unwrap_or(S3OffloadMode::Unknown);
            let reason = S3OffloadReason::from_label(reason).unwrap_or(S3OffloadReason::Unknown);
            store
                .counter(family::elastickv_s3_blob_offload_write_decisions_total(
                    mode, reason,
                ))
                .inc();
        }
    }

    /// Counts a chunk-blob write that missed its replication target.
    #[inline]
    pub fn observe_chunkblob_replication_degraded(&self) {
        if let Some(store) = self.store {
            store
                .counter(family::elastickv_s3_chunkblob_replication_degraded_total())
                .inc();
        }
    }

    /// Counts a chunk-blob payload whose SHA-256 did not match.
    #[inline]
    pub fn observe_chunkblob_sha_mismatch(&self) {
        if let Some(store) = self.store {
            store
                .counter(family::elastickv_s3_chunkblob_sha_mismatch_total())
                .inc();
        }
    }

    /// Counts a chunk-blob read no peer could satisfy.
    #[inline]
    pub fn observe_chunkblob_unrecoverable(&self) {
        if let Some(store) = self.store {
            store
                .counter(family::elastickv_s3_chunkblob_unrecoverable_total())
                .inc();
        }
    }

    /// Sets the backfill queue depth (negative: 0).
    #[inline]
    pub fn observe_chunkblob_backfill_queue_depth(&self, depth: i64) {
        if let Some(store) = self.store {
            store
                .gauge(family::elastickv_s3_chunkblob_backfill_queue_depth())
                .set(depth.max(0));
        }
    }

    /// Counts one backfill outcome (`fetched`, `local_hit`, `gone`, `failed`, `queue_drop`);
    /// anything else is `unknown`.
    #[inline]
    pub fn observe_chunkblob_backfill_result(&self, result: &str) {
        if let Some(store) = self.store {
            let result = S3BackfillResult::from_label(result).unwrap_or(S3BackfillResult::Unknown);
            store
                .counter(family::elastickv_s3_chunkblob_backfill_results_total(
                    result,
                ))
                .inc();
        }
    }
}

impl fmt::Debug for S3Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Observer")
            .field("noop", &self.store.is_none())
            .finish()
    }
}

//! The filesystem observer (upstream `monitoring/filesystem.go` at `d9a031d`): chunk I/O
//! counts and millisecond latencies, planner and allocator events, and placement statistics.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::manifest::domain::{FsHotspotReason, FS_GROUP};
use crate::manifest::family;
use crate::manifest::schema::Slot;
use crate::storage::Store;

/// Placement statistics the filesystem layer reports periodically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementStats {
    /// Whole-file migrations in flight, as the placement layer counts them.
    pub move_inflight: u64,
    /// Durable open-handle leases.
    pub open_handle_leases: u64,
    /// Orphaned inodes waiting for garbage collection.
    pub orphaned_inodes: u64,
    /// Active files with chunks on more than one shard group.
    pub multi_shard_files: u64,
    /// The inodes of those files (new ones count towards the `_detected_total` counter).
    pub multi_shard_inodes: Vec<u64>,
    /// Active files by owning shard group id.
    pub files_by_group: Vec<(u64, u64)>,
}

/// Records the thirteen `elastickv_fs_*` families. Obtained from
/// [`Registry::filesystem_observer`](crate::Registry::filesystem_observer), which creates the
/// eleven label-less series at 0 (upstream registers them unlabelled, so they exist from
/// start-up). The chunk observers are inline (a counter and a histogram, no lock); the move-job
/// and placement observers take a mutex, as upstream's do.
///
/// `files_by_group{group_id}` follows the groups of the latest placement statistics: a group
/// that disappears loses its series. Upstream leaves `group_id` unbounded; here it is capped at
/// 256 groups at a time, the rest summed into `group_id="_other"`.
#[derive(Clone, Default)]
pub struct FileSystemObserver {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: &'static Store,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    active_moves: HashSet<Vec<u8>>,
    last_move_inflight: u64,
    multi_shard: HashSet<u64>,
    groups: HashMap<u64, Slot>,
    overflow_present: bool,
}

fn saturating(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl FileSystemObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        for counter in [
            family::elastickv_fs_file_multi_shard_detected_total(),
            family::elastickv_fs_chunk_read_ops_total(),
            family::elastickv_fs_chunk_write_ops_total(),
            family::elastickv_fs_home_epoch_conflict_total(),
            family::elastickv_fs_inode_id_collision_retry_total(),
        ] {
            store.counter(counter);
        }
        for gauge in [
            family::elastickv_fs_file_multi_shard_current(),
            family::elastickv_fs_file_move_inflight(),
            family::elastickv_fs_open_handle_lease_active(),
            family::elastickv_fs_orphan_inode_gc_pending(),
        ] {
            store.gauge(gauge);
        }
        store.histogram(family::elastickv_fs_chunk_read_latency_ms());
        store.histogram(family::elastickv_fs_chunk_write_latency_ms());
        FileSystemObserver {
            inner: Some(Arc::new(Inner {
                store,
                state: Mutex::new(State::default()),
            })),
        }
    }

    /// Counts a planner skip for `reason` (`split_boundary`; anything else is `unknown`).
    #[inline]
    pub fn observe_file_pinned_hotspot(&self, reason: &str) {
        if let Some(inner) = &self.inner {
            let reason = FsHotspotReason::from_label(reason).unwrap_or(FsHotspotReason::Unknown);
            inner
                .store
                .counter(family::elastickv_fs_file_pinned_hotspot_total(reason))
                .inc();
        }
    }

    /// Counts a chunk read and records its latency.
    #[inline]
    pub fn observe_chunk_read(&self, elapsed: Duration) {
        if let Some(inner) = &self.inner {
            inner
                .store
                .counter(family::elastickv_fs_chunk_read_ops_total())
                .inc();
            inner
                .store
                .histogram(family::elastickv_fs_chunk_read_latency_ms())
                .observe_duration(elapsed);
        }
    }

    /// Counts a chunk write and records its latency.
    #[inline]
    pub fn observe_chunk_write(&self, elapsed: Duration) {
        if let Some(inner) = &self.inner {
            inner
                .store
                .counter(family::elastickv_fs_chunk_write_ops_total())
                .inc();
            inner
                .store
                .histogram(family::elastickv_fs_chunk_write_latency_ms())
                .observe_duration(elapsed);
        }
    }

    /// Counts a mutation refused because the file's home moved or changed epoch.
    #[inline]
    pub fn observe_home_epoch_conflict(&self) {
        if let Some(inner) = &self.inner {
            inner
                .store
                .counter(family::elastickv_fs_home_epoch_conflict_total())
                .inc();
        }
    }

    /// Counts an inode allocation retried after an id collision.
    #[inline]
    pub fn observe_inode_id_collision_retry(&self) {
        if let Some(inner) = &self.inner {
            inner
                .store
                .counter(family::elastickv_fs_inode_id_collision_retry_total())
                .inc();
        }
    }

    /// Marks migration job `job_id` active or finished. The in-flight gauge is the larger of
    /// the active jobs seen here and the placement layer's own count.
    pub fn observe_move_job(&self, job_id: &[u8], active: bool) {
        let Some(inner) = &self.inner else { return };
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if active {
            state.active_moves.insert(job_id.to_vec());
        } else {
            state.active_moves.remove(job_id);
        }
        Self::update_move_inflight(inner.store, &state);
    }

    fn update_move_inflight(store: &'static Store, state: &State) {
        let inflight = state
            .last_move_inflight
            .max(state.active_moves.len() as u64);
        store
            .gauge(family::elastickv_fs_file_move_inflight())
            .set(saturating(inflight));
    }

    /// Applies one set of placement statistics.
    pub fn observe_placement_stats(&self, stats: &PlacementStats) {
        let Some(inner) = &self.inner else { return };
        let store = inner.store;
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *state;
        state.last_move_inflight = stats.move_inflight;
        Self::update_move_inflight(store, state);
        store
            .gauge(family::elastickv_fs_open_handle_lease_active())
            .set(saturating(stats.open_handle_leases));
        store
            .gauge(family::elastickv_fs_orphan_inode_gc_pending())
            .set(saturating(stats.orphaned_inodes));
        store
            .gauge(family::elastickv_fs_file_multi_shard_current())
            .set(saturating(stats.multi_shard_files));

        let next: HashSet<u64> = stats.multi_shard_inodes.iter().copied().collect();
        let fresh = next.difference(&state.multi_shard).count() as u64;
        if fresh > 0 {
            store
                .counter(family::elastickv_fs_file_multi_shard_detected_total())
                .inc_by(fresh);
        }
        state.multi_shard = next;

        let groups = store.open(FS_GROUP);
        let overflow = groups.overflow();
        let mut files: HashMap<u64, u64> = HashMap::new();
        for &(group, n) in &stats.files_by_group {
            // A group listed twice keeps its last count, as a Go map would.
            files.insert(group, n);
        }
        // Release departed groups first, so their slots can label this poll's new ones.
        let departed: Vec<u64> = state
            .groups
            .keys()
            .filter(|g| !files.contains_key(g))
            .copied()
            .collect();
        for group in departed {
            if let Some(slot) = state.groups.remove(&group) {
                store.remove(family::elastickv_fs_files_by_group(slot));
                groups.release(slot);
            }
        }
        let mut overflow_files: Option<u64> = None;
        let mut buf = itoa_buf();
        for (&group, &n) in &files {
            let slot = match state.groups.get(&group) {
                Some(&slot) => slot,
                None => {
                    let (slot, _) = groups.acquire(&[decimal(group, &mut buf)]);
                    if slot == overflow {
                        let sum = overflow_files.get_or_insert(0);
                        *sum = sum.saturating_add(n);
                        continue;
                    }
                    state.groups.insert(group, slot);
                    slot
                }
            };
            store
                .gauge(family::elastickv_fs_files_by_group(slot))
                .set(saturating(n));
        }
        match overflow_files {
            Some(sum) => {
                store
                    .gauge(family::elastickv_fs_files_by_group(overflow))
                    .set(saturating(sum));
                state.overflow_present = true;
            }
            None if state.overflow_present => {
                store.remove(family::elastickv_fs_files_by_group(overflow));
                state.overflow_present = false;
            }
            None => {}
        }
    }
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

fn decimal(v: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

impl fmt::Debug for FileSystemObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSystemObserver")
            .field("noop", &self.inner.is_none())
            .finish()
    }
}

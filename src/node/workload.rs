//! Request traffic: Redis, DynamoDB, Lua scripts and fast path, lease reads, SQS partition
//! operations and raft proposal failures, at a configured rate.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use elastickv_metrics::elastickv::dynamodb::{DynamoDbRequestReport, DynamoDbTableMetrics};
use elastickv_metrics::elastickv::lua::{FallbackReason, LuaFastPathCmd, LuaScriptReport};
use elastickv_metrics::elastickv::redis::RedisRequestReport;
use elastickv_metrics::Registry;
use tokio_util::sync::CancellationToken;

use super::Rng;

const KNOWN_REDIS: &[&str] = &[
    "GET",
    "SET",
    "get",
    "set",
    "HGET",
    "HSET",
    "ZADD",
    "ZSCORE",
    "ZRANGEBYSCORE",
    "LPUSH",
    "RPOP",
    "DEL",
    "EXISTS",
    "INCR",
    "EXPIRE",
    " ping ",
    "MULTI",
    "EXEC",
    "EVALSHA",
    "XADD",
    "SCAN",
];
const UNKNOWN_REDIS: &[&str] = &["FOOBAR", "CLUSTER", "OBJECT", ""];
/// More distinct unsupported names than the 32-name cap, so `other` shows up.
const UNSUPPORTED_REDIS: usize = 40;

const DYNAMO_OPS: &[&str] = &[
    "GetItem",
    "PutItem",
    "Query",
    "Scan",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "DescribeTable",
    "ListTables",
    "CreateTable",
    "DeleteTable",
    "BatchGetItem",
];
/// More tables than the 512-table cap, so `_other` shows up.
const DYNAMO_TABLES: u64 = 600;

const FAST_PATH_COMMANDS: &[&str] = &[
    "zrangebyscore",
    "zscore",
    "hget",
    "hgetall",
    "get",
    "lrange",
];
const SQS_QUEUES: &[&str] = &["orders.fifo", "audio.fifo", "events.fifo"];
const SQS_ACTIONS: &[&str] = &["send", "receive", "delete"];

/// Starts `workers` threads that together issue about `rate` synthetic requests per second
/// until `cancel` fires.
pub fn start_workload(
    registry: Registry,
    cancel: CancellationToken,
    workers: usize,
    rate: f64,
) -> Vec<JoinHandle<()>> {
    let per_worker = rate / workers as f64;
    (0..workers)
        .map(|i| {
            let registry = registry.clone();
            let cancel = cancel.clone();
            std::thread::Builder::new()
                .name(format!("workload-{i}"))
                .spawn(move || Worker::new(registry, i as u64 + 1).run(&cancel, per_worker))
                .expect("spawning a workload thread")
        })
        .collect()
}

struct Worker {
    registry: Registry,
    rng: Rng,
    fast_path: Vec<LuaFastPathCmd>,
    table_names: Vec<String>,
    unsupported: Vec<String>,
}

impl Worker {
    fn new(registry: Registry, seed: u64) -> Worker {
        let fast_path_observer = registry.lua_fast_path_observer();
        let fast_path = FAST_PATH_COMMANDS
            .iter()
            .map(|cmd| fast_path_observer.for_command(cmd))
            .collect();
        Worker {
            registry,
            rng: Rng::new(seed),
            fast_path,
            table_names: (0..DYNAMO_TABLES).map(|i| format!("table-{i}")).collect(),
            unsupported: (0..UNSUPPORTED_REDIS).map(|i| format!("xcmd{i}")).collect(),
        }
    }

    fn run(mut self, cancel: &CancellationToken, rate: f64) {
        // Work in 10 ms slices: `rate` spread evenly, with the fractional part carried over.
        let slice = Duration::from_millis(10);
        let per_slice = rate * slice.as_secs_f64();
        let mut owed = 0.0;
        let mut next = Instant::now();
        while !cancel.is_cancelled() {
            owed += per_slice;
            while owed >= 1.0 {
                self.one_request();
                owed -= 1.0;
            }
            next += slice;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else {
                // Behind schedule: do not try to catch up in a burst.
                next = now;
            }
        }
    }

    fn latency(&mut self) -> Duration {
        // Mostly fast, with a long tail.
        let micros = match self.rng.below(100) {
            0..=79 => 50 + self.rng.below(2_000),
            80..=97 => 2_000 + self.rng.below(50_000),
            _ => 50_000 + self.rng.below(3_000_000),
        };
        Duration::from_micros(micros)
    }

    fn one_request(&mut self) {
        match self.rng.below(100) {
            0..=39 => self.redis(),
            40..=59 => self.dynamodb(),
            60..=69 => self.lua_script(),
            70..=84 => self.fast_path(),
            85..=94 => self
                .registry
                .lease_read_observer()
                .observe(self.rng.chance(90)),
            95..=98 => self.sqs(),
            99 if self.rng.chance(50) => self.parity_events(),
            _ => {
                let group = 1 + self.rng.below(3);
                if self.rng.chance(20) {
                    self.registry
                        .raft_proposal_observer(group)
                        .observe_proposal_failure();
                }
            }
        }
    }

    fn redis(&mut self) {
        let observer = self.registry.redis_observer();
        let duration = self.latency();
        let roll = self.rng.below(100);
        let (command, unsupported): (Vec<u8>, bool) = match roll {
            0..=3 => (self.rng.pick(UNKNOWN_REDIS).as_bytes().to_vec(), false),
            4..=5 => (self.rng.pick(&self.unsupported).clone().into_bytes(), true),
            6 => (vec![b'b', 0xff, 0xfe], true),
            _ => (self.rng.pick(KNOWN_REDIS).as_bytes().to_vec(), false),
        };
        let report = RedisRequestReport {
            command: &command,
            is_error: unsupported || self.rng.chance(3),
            duration,
            unsupported,
        };
        // One request in ten carries a synthetic W3C-sized trace context, so the OpenMetrics
        // and protobuf expositions show exemplars on the latency buckets (a real node would
        // take them from its tracing context).
        if self.rng.chance(10) {
            let trace = format!("{:016x}{:016x}", self.rng.next(), self.rng.next());
            let span = format!("{:016x}", self.rng.next());
            let exemplar = elastickv_metrics::storage::Exemplar::trace(&trace, &span).now();
            // A dropped exemplar (another worker wrote the same bucket at that instant) is fine.
            let _ = observer.observe_with_exemplar(&report, &exemplar);
        } else {
            observer.observe(&report);
        }
    }

    fn dynamodb(&mut self) {
        let observer = self.registry.dynamodb_observer();
        let operation = *self.rng.pick(DYNAMO_OPS);
        observer.observe_in_flight_change(operation, 1.0);
        let duration = self.latency();
        let table = self.rng.below(DYNAMO_TABLES) as usize;
        let tables = [self.table_names[table].as_str()];
        let metrics = [(
            tables[0],
            DynamoDbTableMetrics {
                returned_items: self.rng.below(20) as i64,
                scanned_items: self.rng.below(50) as i64,
                written_items: if operation.contains("Write") || operation.ends_with("Item") {
                    self.rng.below(3) as i64
                } else {
                    0
                },
            },
        )];
        let (http_status, error_type) = match self.rng.below(100) {
            0..=2 => (400, "ConditionalCheckFailedException"),
            3..=6 => (400, "ValidationException"),
            7 => (500, "InternalServerError"),
            _ => (200, ""),
        };
        observer.observe_request(&DynamoDbRequestReport {
            operation,
            http_status,
            error_type,
            duration,
            request_bytes: self.rng.below(70_000) as i64,
            response_bytes: self.rng.below(600_000) as i64,
            tables: &tables,
            table_metrics: Some(&metrics),
        });
        observer.observe_in_flight_change(operation, -1.0);
    }

    fn lua_script(&mut self) {
        let exec = self.latency();
        let redis_call = exec / 2;
        self.registry.lua_observer().observe(&LuaScriptReport {
            lua_exec_duration: exec,
            redis_call_duration: redis_call,
            redis_call_count: self.rng.below(40) as i64,
            commit_duration: Duration::from_micros(100 + self.rng.below(5_000)),
            conflict_retries: if self.rng.chance(10) {
                1 + self.rng.below(4) as i64
            } else {
                0
            },
            is_error: self.rng.chance(4),
        });
    }

    fn fast_path(&mut self) {
        let cmd = self.fast_path[self.rng.below(self.fast_path.len() as u64) as usize];
        match self.rng.below(12) {
            0..=3 => cmd.observe_hit(),
            4 => cmd.observe_skip_loaded(),
            5 => cmd.observe_skip_cached_type(),
            6 => cmd.observe_fallback(FallbackReason::Ineligible),
            7 => cmd.observe_fallback(FallbackReason::MissingKey),
            8 => cmd.observe_fallback(FallbackReason::WrongType),
            9 => cmd.observe_fallback(FallbackReason::Truncated),
            10 => cmd.observe_fallback(FallbackReason::LargeOffset),
            _ => cmd.observe_fallback_str("some-other-reason"),
        }
    }

    /// The subsystems upstream added at `d9a031d`: S3, filesystem and cold start.
    fn parity_events(&mut self) {
        let s3 = self.registry.s3_observer();
        let stage = *self.rng.pick(&["prereserve", "perbatch"]);
        let protocol = *self.rng.pick(&["fixed-length", "chunked"]);
        let wait = self.latency();
        s3.observe_put_admission_wait(stage, protocol, wait);
        s3.observe_put_admission_inflight(self.rng.below(64 << 20) as i64);
        if self.rng.chance(10) {
            s3.observe_put_admission_rejection(stage, protocol);
        }
        let (mode, reason) = *self.rng.pick(&[
            ("offload", "enabled"),
            ("legacy", "flag_disabled"),
            ("legacy", "capability_missing"),
            ("legacy", "data_path_disabled"),
        ]);
        s3.observe_blob_offload_decision(mode, reason);
        match self.rng.below(20) {
            0 => s3.observe_chunkblob_replication_degraded(),
            1 => s3.observe_chunkblob_sha_mismatch(),
            2 => s3.observe_chunkblob_unrecoverable(),
            _ => {}
        }
        s3.observe_chunkblob_backfill_queue_depth(self.rng.below(100) as i64);
        let result = *self
            .rng
            .pick(&["fetched", "local_hit", "gone", "failed", "queue_drop"]);
        s3.observe_chunkblob_backfill_result(result);

        let throttle = self.registry.sqs_throttle_observer();
        let queue = *self.rng.pick(&["orders", "payments", "events.fifo"]);
        let action = *self.rng.pick(&["send", "receive", "default"]);
        let throttled = self.rng.chance(20);
        throttle.observe_throttle_decision(queue, action, self.rng.below(100) as f64, throttled);
        if self.rng.chance(5) {
            throttle.forget_throttle_action(queue, action);
        }

        let fs = self.registry.filesystem_observer();
        let read = self.latency();
        fs.observe_chunk_read(read);
        let write = self.latency();
        fs.observe_chunk_write(write);
        if self.rng.chance(5) {
            fs.observe_home_epoch_conflict();
        }
        if self.rng.chance(5) {
            fs.observe_inode_id_collision_retry();
        }
        if self.rng.chance(5) {
            fs.observe_file_pinned_hotspot("split_boundary");
        }
        let job = [b'j', b'0' + self.rng.below(4) as u8];
        fs.observe_move_job(&job, self.rng.chance(50));

        if self.rng.chance(2) {
            let cold = self.registry.cold_start_observer();
            let snap = 1_000 + self.rng.below(1_000);
            match self.rng.below(3) {
                0 => cold.restore_skipped(snap, snap + self.rng.below(50)),
                1 => cold.restore_executed(snap, snap.saturating_sub(self.rng.below(500))),
                _ => cold.restore_fallback(snap, "meta_missing"),
            }
        }
    }

    fn sqs(&mut self) {
        let queue = *self.rng.pick(SQS_QUEUES);
        let partition = self.rng.below(8) as u32;
        let action = *self.rng.pick(SQS_ACTIONS);
        self.registry
            .sqs_partition_observer()
            .observe_partition_message(queue, partition, action);
    }
}

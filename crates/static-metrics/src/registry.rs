//! A registry: the storage of one manifest's families plus the values of its constant labels,
//! and the reusable buffers its scrapes encode with.

use std::sync::{Arc, Mutex};

use crate::encode::{self, EncodeOptions, Encoder, Format};
use crate::schema::{FamilyDesc, Schema, Series, Slot};
use crate::snapshot::Snapshot;
use crate::storage::{Counter, FloatGauge, Gauge, Histogram, OpenSet, Store};

/// Buffers one scrape reuses; a few are pooled so concurrent scrapes do not wait for each other.
struct ScrapeBuffers {
    snapshot: Snapshot,
    encoder: Encoder,
}

const POOLED_SCRAPE_BUFFERS: usize = 4;

struct Inner {
    /// False for [`Registry::disabled`]: handles are no-ops and the exposition is empty.
    enabled: bool,
    store: &'static Store,
    const_values: Vec<String>,
    /// `name="value",…` for the constant labels, escaped once.
    const_labels: String,
    scrape_pool: Mutex<Vec<ScrapeBuffers>>,
    /// Whether scrapes append the `process_*` families (off unless asked for).
    #[cfg(feature = "process")]
    process: std::sync::atomic::AtomicBool,
}

/// The metrics of one manifest for one process (or one node of it): every family of the
/// schema, every series carrying the manifest's constant labels with the values given here.
///
/// Cloning is cheap and shares everything. Registries are independent of each other. A
/// registry's cells live for the rest of the process (see [`Store`]): create one per node or
/// service at start-up, not per request.
///
/// The generated code of a manifest (see the crate docs) has a typed constructor,
/// `registry(…)`, with one argument per constant label; [`Registry::new`] is what it calls.
///
/// ```
/// use static_metrics::encode::Format;
/// use static_metrics::example as metrics;
///
/// let registry = metrics::registry("checkout");
/// registry
///     .counter(metrics::family::jobs_total(metrics::domain::Outcome::Ok))
///     .inc();
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"jobs_total{outcome="ok",service="checkout"} 1"#));
/// ```
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Registry {
    /// A registry of `schema` whose series carry the constant labels with `const_values`, in
    /// the manifest's order (verbatim; they are escaped for the exposition).
    ///
    /// # Panics
    ///
    /// If `const_values` does not have one value per constant label of the schema: a
    /// programmer error, which the generated typed constructor rules out.
    pub fn new(schema: &'static Schema, const_values: &[&str]) -> Registry {
        assert_eq!(
            const_values.len(),
            schema.const_labels.len(),
            "one value per constant label ({:?})",
            schema.const_labels
        );
        Registry::build(schema, const_values, true)
    }

    /// A registry with metrics turned off: every handle it resolves is a no-op (observations
    /// are dropped without failing) and its exposition is empty.
    pub fn disabled(schema: &'static Schema) -> Registry {
        let empty = vec![""; schema.const_labels.len()];
        Registry::build(schema, &empty, false)
    }

    fn build(schema: &'static Schema, const_values: &[&str], enabled: bool) -> Registry {
        let store = Store::new(schema);
        let mut const_labels = Vec::new();
        for (i, (name, value)) in schema.const_labels.iter().zip(const_values).enumerate() {
            if i > 0 {
                const_labels.push(b',');
            }
            const_labels.extend_from_slice(name.as_bytes());
            const_labels.extend_from_slice(b"=\"");
            crate::format::escape::write_label_value(&mut const_labels, value);
            const_labels.push(b'"');
        }
        Registry {
            inner: Arc::new(Inner {
                enabled,
                store,
                const_values: const_values.iter().map(|v| v.to_string()).collect(),
                const_labels: String::from_utf8(const_labels).expect("escaping keeps UTF-8"),
                scrape_pool: Mutex::new(Vec::new()),
                #[cfg(feature = "process")]
                process: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Whether this registry records anything (false for [`Registry::disabled`]).
    #[inline]
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The schema this registry is laid out from.
    pub fn schema(&self) -> &'static Schema {
        self.inner.store.schema()
    }

    /// The value of constant label number `index` (manifest order), if there is one.
    pub fn const_value(&self, index: usize) -> Option<&str> {
        self.inner.const_values.get(index).map(String::as_str)
    }

    /// The constant labels as exposition text, `name="value",…` (escaped).
    pub fn const_labels(&self) -> &str {
        &self.inner.const_labels
    }

    /// Low-level access to the cells.
    #[inline]
    pub fn store(&self) -> &'static Store {
        self.inner.store
    }

    /// Resolves a counter series (see [`Store::counter`]); a no-op handle when disabled.
    #[inline]
    pub fn counter(&self, series: Series) -> Counter {
        if !self.inner.enabled {
            return Counter::default();
        }
        self.inner.store.counter(series)
    }

    /// Resolves an integer gauge series (see [`Store::gauge`]); a no-op handle when disabled.
    #[inline]
    pub fn gauge(&self, series: Series) -> Gauge {
        if !self.inner.enabled {
            return Gauge::default();
        }
        self.inner.store.gauge(series)
    }

    /// Resolves a float gauge series (see [`Store::float_gauge`]); a no-op handle when
    /// disabled.
    #[inline]
    pub fn float_gauge(&self, series: Series) -> FloatGauge {
        if !self.inner.enabled {
            return FloatGauge::default();
        }
        self.inner.store.float_gauge(series)
    }

    /// Resolves a histogram series (see [`Store::histogram`]); a no-op handle when disabled.
    #[inline]
    pub fn histogram(&self, series: Series) -> Histogram {
        if !self.inner.enabled {
            return Histogram::default();
        }
        self.inner.store.histogram(series)
    }

    /// The slot of `value` in open domain `domain` (generated as `domain::<ID>`), admitting it
    /// if the domain has room; the overflow slot otherwise. Never fails: any text is a valid
    /// label value (escaped at admission).
    ///
    /// # Panics
    ///
    /// If `domain` is a closed domain (a programmer error: closed labels are enums).
    pub fn resolve(&self, domain: crate::schema::DomainId, value: &str) -> Slot {
        self.open(domain).resolve(value)
    }

    /// The value set of open domain `domain`.
    ///
    /// # Panics
    ///
    /// If `domain` is a closed domain.
    pub fn open(&self, domain: crate::schema::DomainId) -> &'static OpenSet {
        self.inner.store.open(domain)
    }

    /// Removes a gauge series from the exposition (see [`Store::remove`]).
    pub fn remove(&self, series: Series) -> bool {
        self.inner.store.remove(series)
    }

    /// Whether every scrape of this registry also exports the `process_*` families of
    /// Prometheus's process collector (CPU seconds, memory, descriptors, start time; see
    /// [`process`](crate::process)), with this registry's constant labels. Off by default: a
    /// process that serves several registries should turn it on for one only.
    #[cfg(feature = "process")]
    pub fn set_process_metrics(&self, on: bool) {
        self.inner
            .process
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`set_process_metrics`](Self::set_process_metrics) turned the process families on.
    #[cfg(feature = "process")]
    pub fn process_metrics(&self) -> bool {
        self.inner
            .process
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends the exposition of every family in `format` to `out`, without the closing
    /// `# EOF` of OpenMetrics (see [`encode::finish`]).
    pub fn encode(&self, format: Format, out: &mut Vec<u8>) {
        self.encode_where(format, |_| true, out);
    }

    /// Like [`encode`](Self::encode), for the families whose name `keep` accepts.
    pub fn encode_where(&self, format: Format, keep: impl FnMut(&str) -> bool, out: &mut Vec<u8>) {
        self.encode_with(format, EncodeOptions::default(), keep, out);
    }

    /// Like [`encode_where`](Self::encode_where), with `options` (start timestamps).
    pub fn encode_with(
        &self,
        format: Format,
        options: EncodeOptions,
        mut keep: impl FnMut(&str) -> bool,
        out: &mut Vec<u8>,
    ) {
        if !self.inner.enabled {
            return;
        }
        let pooled = self
            .inner
            .scrape_pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let mut buffers = pooled.unwrap_or_else(|| ScrapeBuffers {
            snapshot: Snapshot::new(),
            encoder: Encoder::new(),
        });
        buffers
            .snapshot
            .capture_where(self.inner.store, |f: &FamilyDesc| keep(f.name));
        let created = options.created_timestamps.then_some(self.inner.store);
        buffers.encoder.encode_with(
            &buffers.snapshot,
            &self.inner.const_labels,
            format,
            created,
            out,
        );
        #[cfg(feature = "process")]
        if self.process_metrics() {
            if let Ok(stats) = crate::process::read() {
                crate::process::encode(&stats, format, &self.inner.const_labels, &mut keep, out);
            }
        }
        let mut pool = self
            .inner
            .scrape_pool
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED_SCRAPE_BUFFERS {
            pool.push(buffers);
        }
    }

    /// The complete exposition as a string (with `# EOF` for OpenMetrics), for the text
    /// formats. Protobuf is binary: use [`render_bytes`](Self::render_bytes) (here its bytes
    /// are converted lossily, never panicking).
    pub fn render(&self, format: Format) -> String {
        String::from_utf8(self.render_bytes(format))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// The complete exposition as bytes (with `# EOF` for OpenMetrics).
    pub fn render_bytes(&self, format: Format) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(format, &mut out);
        encode::finish(format, &mut out);
        out
    }

    /// A point-in-time copy of every series, for tests and custom exporters.
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::new();
        snapshot.capture(self.inner.store);
        snapshot
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("const_labels", &self.inner.const_labels)
            .field("enabled", &self.inner.enabled)
            .finish_non_exhaustive()
    }
}

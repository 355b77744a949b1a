//! The envelope store: one ring buffer per source id, ordered by timestamp, bounded per source
//! (oldest evicted first) and globally by memory (oldest envelopes of the largest source
//! evicted first). Envelopes are kept as their log-cache JSON, so a read only copies out
//! reference-counted strings and concatenates them.
//!
//! Evicting an envelope younger than `min_retention` counts as a *drop* for its source; drops
//! are reported by the caller as `LGR` notices (see `Ingestor::report_drops`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use protocol::logs::{now_nanos, Envelope, EnvelopeKind, RawEnvelope};

/// Bookkeeping bytes charged per stored envelope on top of its JSON.
const ENTRY_OVERHEAD_BYTES: usize = 48;
/// Bytes charged per source on top of its entries.
const SOURCE_OVERHEAD_BYTES: usize = 256;
/// When the memory bound is exceeded, evict down to this fraction of it, so that the scan for
/// the largest source happens once per burst rather than once per envelope (and yet one
/// eviction round, done under the lock, stays short: 1 % of 256 MiB is about 2,500 entries).
const MEMORY_LOW_WATER_PERCENT: usize = 99;

/// One stored envelope.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) timestamp: i64,
    pub(crate) kind: Option<EnvelopeKind>,
    pub(crate) json: Arc<str>,
}

impl Entry {
    /// Serialises the envelope once, outside any lock.
    pub(crate) fn new(envelope: &Envelope) -> Option<Entry> {
        let mut json = Vec::with_capacity(1024);
        envelope.write_json(&mut json);
        let json = String::from_utf8(json).ok()?;
        Some(Entry {
            timestamp: envelope.timestamp,
            kind: envelope.kind(),
            json: json.into(),
        })
    }

    /// An entry for an envelope whose JSON is already canonical (see `IngressDatagram::scan`).
    pub(crate) fn from_raw(envelope: &RawEnvelope<'_>) -> Entry {
        Entry {
            timestamp: envelope.timestamp,
            kind: Some(envelope.kind),
            json: envelope.json.into(),
        }
    }

    fn bytes(&self) -> usize {
        self.json.len() + ENTRY_OVERHEAD_BYTES
    }
}

#[derive(Default)]
struct Source {
    entries: VecDeque<Entry>,
    bytes: usize,
    expired: u64,
    dropped_total: u64,
    /// Drops not yet reported in the source's stream.
    dropped_unreported: u64,
    last_notice: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    sources: HashMap<String, Source>,
    total_bytes: usize,
    envelopes: u64,
    expired_total: u64,
    dropped_total: u64,
    memory_evictions_total: u64,
}

/// A read request, already validated.
pub(crate) struct ReadQuery {
    pub(crate) start_time: i64,
    pub(crate) end_time: i64,
    pub(crate) limit: usize,
    pub(crate) kinds: Vec<EnvelopeKind>,
    pub(crate) descending: bool,
}

/// Per-source figures for `/api/v1/meta`.
pub(crate) struct SourceMeta {
    pub(crate) source_id: String,
    pub(crate) count: u64,
    pub(crate) expired: u64,
    pub(crate) oldest_timestamp: i64,
    pub(crate) newest_timestamp: i64,
}

/// Figures for `/metrics`.
pub(crate) struct StoreStats {
    pub(crate) envelopes: u64,
    pub(crate) bytes: u64,
    pub(crate) sources: u64,
    pub(crate) expired_total: u64,
    pub(crate) dropped_total: u64,
    pub(crate) memory_evictions_total: u64,
    pub(crate) dropped_by_source: Vec<(String, u64)>,
}

/// A drop notice due for one source.
pub(crate) struct DropNotice {
    pub(crate) source_id: String,
    pub(crate) dropped: u64,
    pub(crate) total: u64,
}

pub(crate) struct Store {
    inner: Mutex<Inner>,
    max_per_source: usize,
    max_bytes: usize,
    min_retention_nanos: i64,
}

impl Store {
    pub(crate) fn new(max_per_source: usize, max_bytes: usize, min_retention: Duration) -> Store {
        Store {
            inner: Mutex::new(Inner::default()),
            max_per_source,
            max_bytes,
            min_retention_nanos: i64::try_from(min_retention.as_nanos()).unwrap_or(i64::MAX),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the buffers inconsistent in a way that
        // matters more than losing logs; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores envelopes (source id, entry) under one lock acquisition.
    pub(crate) fn insert_batch(&self, batch: Vec<(&str, Entry)>) {
        if batch.is_empty() {
            return;
        }
        let now = now_nanos();
        // Evicted entries are freed after the lock is released, so that readers and the other
        // ingress thread do not wait for the allocator.
        let mut evicted = Vec::new();
        let mut inner = self.lock();
        for (source_id, entry) in batch {
            self.insert_locked(&mut inner, source_id, entry, now, &mut evicted);
        }
        if inner.total_bytes > self.max_bytes {
            self.evict_for_memory(&mut inner, now, &mut evicted);
        }
        drop(inner);
        drop(evicted);
    }

    fn insert_locked(
        &self,
        inner: &mut Inner,
        source_id: &str,
        entry: Entry,
        now: i64,
        graveyard: &mut Vec<Entry>,
    ) {
        let bytes = entry.bytes();
        // Look up by reference first: a new source (and its key) is the rare case.
        if !inner.sources.contains_key(source_id) {
            inner.total_bytes += SOURCE_OVERHEAD_BYTES + source_id.len();
            inner
                .sources
                .insert(source_id.to_owned(), Source::default());
        }
        let Some(source) = inner.sources.get_mut(source_id) else {
            return;
        };
        // Envelopes arrive nearly in timestamp order: append, or insert a little before the end.
        match source.entries.back() {
            Some(last) if last.timestamp > entry.timestamp => {
                let position = source
                    .entries
                    .partition_point(|existing| existing.timestamp <= entry.timestamp);
                source.entries.insert(position, entry);
            }
            _ => source.entries.push_back(entry),
        }
        source.bytes += bytes;
        inner.total_bytes += bytes;
        inner.envelopes += 1;
        while source.entries.len() > self.max_per_source {
            let evicted = evict_oldest(source, now, self.min_retention_nanos, graveyard);
            inner.total_bytes -= evicted.bytes;
            inner.envelopes -= 1;
            inner.expired_total += 1;
            if evicted.dropped {
                inner.dropped_total += 1;
            }
        }
    }

    /// Evicts the oldest envelopes of the largest source until under the low-water mark.
    fn evict_for_memory(&self, inner: &mut Inner, now: i64, graveyard: &mut Vec<Entry>) {
        let target = self.max_bytes / 100 * MEMORY_LOW_WATER_PERCENT;
        while inner.total_bytes > target {
            let Some(largest) = inner
                .sources
                .iter()
                .filter(|(_, source)| !source.entries.is_empty())
                .max_by_key(|(_, source)| source.bytes)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            let Some(source) = inner.sources.get_mut(&largest) else {
                break;
            };
            // Take a tenth of the largest source (at least one) per scan.
            let batch = (source.entries.len() / 10).max(1);
            for _ in 0..batch {
                if inner.total_bytes <= target || source.entries.is_empty() {
                    break;
                }
                let evicted = evict_oldest(source, now, self.min_retention_nanos, graveyard);
                inner.total_bytes -= evicted.bytes;
                inner.envelopes -= 1;
                inner.expired_total += 1;
                inner.memory_evictions_total += 1;
                if evicted.dropped {
                    inner.dropped_total += 1;
                }
            }
        }
    }

    /// The entries matching `query`, in the order log-cache returns them.
    pub(crate) fn read(&self, source_id: &str, query: &ReadQuery) -> Vec<Arc<str>> {
        let inner = self.lock();
        let Some(source) = inner.sources.get(source_id) else {
            return Vec::new();
        };
        let entries = &source.entries;
        let from = entries.partition_point(|entry| entry.timestamp < query.start_time);
        let to = entries.partition_point(|entry| entry.timestamp < query.end_time);
        if from >= to {
            return Vec::new();
        }
        let wanted = |entry: &&Entry| {
            query.kinds.is_empty() || entry.kind.is_some_and(|kind| query.kinds.contains(&kind))
        };
        let range = entries.range(from..to);
        let mut out = Vec::with_capacity(query.limit.min(to - from));
        if query.descending {
            out.extend(
                range
                    .rev()
                    .filter(wanted)
                    .take(query.limit)
                    .map(|entry| entry.json.clone()),
            );
        } else {
            out.extend(
                range
                    .filter(wanted)
                    .take(query.limit)
                    .map(|entry| entry.json.clone()),
            );
        }
        out
    }

    pub(crate) fn meta(&self) -> Vec<SourceMeta> {
        let inner = self.lock();
        let mut meta: Vec<SourceMeta> = inner
            .sources
            .iter()
            .map(|(source_id, source)| SourceMeta {
                source_id: source_id.clone(),
                count: source.entries.len() as u64,
                expired: source.expired,
                oldest_timestamp: source.entries.front().map_or(0, |entry| entry.timestamp),
                newest_timestamp: source.entries.back().map_or(0, |entry| entry.timestamp),
            })
            .collect();
        meta.sort_by(|a, b| a.source_id.cmp(&b.source_id));
        meta
    }

    /// Sources with unreported drops whose last notice is at least `interval` old; their
    /// unreported counts are reset.
    pub(crate) fn take_drop_notices(&self, interval: Duration) -> Vec<DropNotice> {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut notices = Vec::new();
        for (source_id, source) in inner.sources.iter_mut() {
            if source.dropped_unreported == 0 {
                continue;
            }
            if source
                .last_notice
                .is_some_and(|last| now.duration_since(last) < interval)
            {
                continue;
            }
            notices.push(DropNotice {
                source_id: source_id.clone(),
                dropped: source.dropped_unreported,
                total: source.dropped_total,
            });
            source.dropped_unreported = 0;
            source.last_notice = Some(now);
        }
        notices
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let inner = self.lock();
        let mut dropped_by_source: Vec<(String, u64)> = inner
            .sources
            .iter()
            .filter(|(_, source)| source.dropped_total > 0)
            .map(|(id, source)| (id.clone(), source.dropped_total))
            .collect();
        dropped_by_source.sort();
        StoreStats {
            envelopes: inner.envelopes,
            bytes: inner.total_bytes as u64,
            sources: inner.sources.len() as u64,
            expired_total: inner.expired_total,
            dropped_total: inner.dropped_total,
            memory_evictions_total: inner.memory_evictions_total,
            dropped_by_source,
        }
    }
}

struct Evicted {
    bytes: usize,
    dropped: bool,
}

/// Takes the oldest entry of `source` out into `graveyard` (freed by the caller later).
fn evict_oldest(
    source: &mut Source,
    now: i64,
    min_retention_nanos: i64,
    graveyard: &mut Vec<Entry>,
) -> Evicted {
    let Some(entry) = source.entries.pop_front() else {
        return Evicted {
            bytes: 0,
            dropped: false,
        };
    };
    let bytes = entry.bytes();
    source.bytes -= bytes;
    source.expired += 1;
    let dropped = now.saturating_sub(entry.timestamp) < min_retention_nanos;
    if dropped {
        source.dropped_total += 1;
        source.dropped_unreported += 1;
    }
    graveyard.push(entry);
    Evicted { bytes, dropped }
}

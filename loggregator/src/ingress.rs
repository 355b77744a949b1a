//! Ingress: the UDP receive thread and the [`Ingestor`] every envelope goes through (store it,
//! hand it to the app's syslog drains). Receiving never pushes back on senders: the socket is
//! UDP with a large kernel buffer, the thread only parses and appends, and drains take
//! envelopes through bounded drop-oldest queues.
//!
//! Datagrams in the emitters' own canonical form (all of Kiln's) take a fast path
//! ([`IngressDatagram::scan`]): each envelope's JSON is stored as received, without decoding,
//! and only envelopes of apps with drains are decoded. Anything else is decoded with serde and
//! re-encoded, so what log-cache serves is the same either way.
//!
//! Each datagram is an [`IngressDatagram`] with the emitter's id and sequence number; gaps in
//! an emitter's sequence are counted as lost datagrams once they are `REORDER_WINDOW` behind
//! (late datagrams inside the window fill their gap).

use std::collections::{BTreeSet, HashMap};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::logs::{Envelope, IngressDatagram, RawEnvelope};

use crate::drains::DrainRegistry;
use crate::metrics::Metrics;
use crate::store::{Entry, Store};

/// Pause of a receive thread that found the socket empty, doubled on each empty look up to
/// `MAX_IDLE_PAUSE`. Polling a non-blocking socket instead of sleeping in `recv` means senders
/// never have a sleeping reader to wake: under load, a `send` and a `recv` are each one cheap
/// system call, with no wake-up and context switch per datagram. The longest pause is what
/// the kernel buffer must absorb when traffic resumes (8 ms at 100,000 datagrams/s is 800
/// datagrams, well within 8 MiB), and it is also how soon a thread sees shutdown.
const MIN_IDLE_PAUSE: Duration = Duration::from_millis(1);
const MAX_IDLE_PAUSE: Duration = Duration::from_millis(8);
/// A missing sequence number is counted lost once the emitter is this far past it.
const REORDER_WINDOW: u64 = 256;
/// Gaps larger than this are counted lost at once instead of being tracked one by one.
const MAX_TRACKED_GAP: u64 = 4096;
/// Emitters silent for this long are forgotten.
const EMITTER_IDLE: Duration = Duration::from_secs(600);

/// Stores envelopes and forwards them to drains; shared by the receive thread, the drop
/// notices and the drain writers' own notices.
pub(crate) struct Ingestor {
    pub(crate) store: Store,
    pub(crate) drains: Arc<DrainRegistry>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Ingestor {
    /// Stores the envelopes and queues them for their apps' drains. Envelopes without a
    /// source id are dropped (log-cache cannot serve them).
    pub(crate) fn ingest(&self, envelopes: Vec<Envelope>) {
        let batch: Vec<(&str, Entry)> = envelopes
            .iter()
            .filter(|envelope| !envelope.source_id.is_empty())
            .filter_map(|envelope| {
                Entry::new(envelope).map(|entry| (envelope.source_id.as_str(), entry))
            })
            .collect();
        Metrics::add(&self.metrics.ingress_envelopes, batch.len() as u64);
        self.store.insert_batch(batch);
        self.drains.dispatch(envelopes);
    }

    /// The fast path for datagrams in the emitters' canonical form: their envelopes' JSON is
    /// stored as received, and only envelopes of apps with drains are decoded.
    pub(crate) fn ingest_scanned(&self, envelopes: &[RawEnvelope<'_>]) {
        let batch: Vec<(&str, Entry)> = envelopes
            .iter()
            .filter(|envelope| !envelope.source_id.is_empty())
            .map(|envelope| (envelope.source_id, Entry::from_raw(envelope)))
            .collect();
        Metrics::add(&self.metrics.ingress_envelopes, batch.len() as u64);
        self.store.insert_batch(batch);
        self.drains.dispatch_raw(envelopes);
    }

    /// Stores an envelope without sending it to drains (notices about a drain itself).
    pub(crate) fn store_only(&self, envelope: &Envelope) {
        if let Some(entry) = Entry::new(envelope) {
            self.store
                .insert_batch(vec![(envelope.source_id.as_str(), entry)]);
        }
    }

    /// Writes an `LGR` line into each source that lost envelopes since its last notice, in the
    /// words of loggregator's truncating buffer.
    pub(crate) fn report_drops(&self, interval: Duration) {
        for notice in self.store.take_drop_notices(interval) {
            let text = format!(
                "Log message output is too high. {} messages dropped (Total {} messages dropped) from loggregator to log-cache.",
                notice.dropped, notice.total
            );
            tracing::debug!(source_id = %notice.source_id, dropped = notice.dropped, "envelopes dropped");
            self.ingest(vec![Envelope::loggregator_log(notice.source_id, text)]);
        }
    }
}

struct EmitterSequence {
    next: u64,
    missing: BTreeSet<u64>,
    last_seen: Instant,
}

/// Tracks emitters' sequence numbers and counts datagrams that never arrived.
#[derive(Default)]
pub(crate) struct LossTracker {
    emitters: HashMap<String, EmitterSequence>,
    last_prune: Option<Instant>,
}

impl LossTracker {
    /// Records a datagram; returns how many datagrams are now known to be lost.
    fn record(&mut self, emitter: &str, seq: u64, now: Instant) -> u64 {
        let mut lost = 0;
        match self.emitters.get_mut(emitter) {
            None => {
                // First sight (or after a loggregator restart): nothing before it is expected.
                self.emitters.insert(
                    emitter.to_owned(),
                    EmitterSequence {
                        next: seq.saturating_add(1),
                        missing: BTreeSet::new(),
                        last_seen: now,
                    },
                );
            }
            Some(state) => {
                state.last_seen = now;
                if seq >= state.next {
                    let gap = seq - state.next;
                    if gap > MAX_TRACKED_GAP {
                        lost += gap;
                    } else {
                        state.missing.extend(state.next..seq);
                    }
                    state.next = seq.saturating_add(1);
                } else {
                    state.missing.remove(&seq);
                }
                let horizon = state.next.saturating_sub(REORDER_WINDOW);
                while let Some(&oldest) = state.missing.first() {
                    if oldest >= horizon {
                        break;
                    }
                    state.missing.pop_first();
                    lost += 1;
                }
            }
        }
        if self
            .last_prune
            .is_none_or(|last| now.duration_since(last) > EMITTER_IDLE / 10)
        {
            self.last_prune = Some(now);
            self.emitters.retain(|_, state| {
                let keep = now.duration_since(state.last_seen) < EMITTER_IDLE;
                if !keep {
                    lost += state.missing.len() as u64;
                }
                keep
            });
        }
        lost
    }
}

/// Prepares the ingress socket: non-blocking reads (see `MIN_IDLE_PAUSE`) and a large kernel
/// receive buffer.
pub(crate) fn prepare_socket(
    socket: &UdpSocket,
    receive_buffer_bytes: usize,
) -> std::io::Result<()> {
    socket.set_nonblocking(true)?;
    let socket_ref = socket2::SockRef::from(socket);
    if let Err(error) = socket_ref.set_recv_buffer_size(receive_buffer_bytes) {
        tracing::warn!(%error, receive_buffer_bytes, "cannot enlarge the ingress receive buffer");
    }
    Ok(())
}

/// The receive loop, run on its own thread (one per `ingress_threads`, all on clones of the
/// one socket, sharing one loss tracker) until `stop` is set.
pub(crate) fn receive_loop(
    socket: UdpSocket,
    ingestor: Arc<Ingestor>,
    tracker: Arc<Mutex<LossTracker>>,
    stop: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 65_536];
    let mut pause = MIN_IDLE_PAUSE;
    while !stop.load(Ordering::Relaxed) {
        let length = match socket.recv(&mut buffer) {
            Ok(length) => {
                pause = MIN_IDLE_PAUSE;
                length
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_IDLE_PAUSE);
                continue;
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(error) => {
                // ICMP errors from earlier sends and the like; keep receiving.
                tracing::debug!(%error, "ingress receive failed");
                continue;
            }
        };
        let datagram = &buffer[..length];
        if let Some(scanned) = IngressDatagram::scan(datagram) {
            let lost = tracker
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .record(scanned.emitter, scanned.seq, Instant::now());
            if lost > 0 {
                Metrics::add(&ingestor.metrics.ingress_lost_datagrams, lost);
            }
            ingestor.ingest_scanned(&scanned.envelopes);
            Metrics::add(&ingestor.metrics.ingress_datagrams, 1);
            continue;
        }
        match IngressDatagram::decode(datagram) {
            Ok(datagram) => {
                let lost = tracker
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .record(&datagram.emitter, datagram.seq, Instant::now());
                if lost > 0 {
                    Metrics::add(&ingestor.metrics.ingress_lost_datagrams, lost);
                }
                if let (Some(dropped), [notice]) = (datagram.dropped, datagram.batch.as_slice()) {
                    ingestor
                        .metrics
                        .add_emitter_drops(&notice.source_id, dropped);
                }
                ingestor.ingest(datagram.batch);
            }
            Err(error) => {
                Metrics::add(&ingestor.metrics.ingress_invalid_datagrams, 1);
                tracing::debug!(%error, length, "invalid ingress datagram");
            }
        }
        // Counted once handled, so a reader of the metric knows the datagram's sequence number
        // and envelopes are accounted for.
        Metrics::add(&ingestor.metrics.ingress_datagrams, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_count_as_lost_only_beyond_the_reorder_window() {
        let mut tracker = LossTracker::default();
        let now = Instant::now();
        assert_eq!(tracker.record("e", 10, now), 0);
        assert_eq!(tracker.record("e", 12, now), 0); // 11 missing
        assert_eq!(tracker.record("e", 11, now), 0); // late: gap filled
        assert_eq!(tracker.record("e", 14, now), 0); // 13 missing
        let mut lost = 0;
        for seq in 15..(15 + REORDER_WINDOW + 1) {
            lost += tracker.record("e", seq, now);
        }
        assert_eq!(lost, 1);
        assert_eq!(tracker.record("other", 1_000_000, now), 0);
        assert_eq!(
            tracker.record("other", 1_000_000 + MAX_TRACKED_GAP + 2, now),
            MAX_TRACKED_GAP + 1
        );
    }
}

//! mmap snapshots of overwrite-mode buffers (docs/FORMAT.md, "mmap snapshot").
//!
//! The image holds `n_subbufs` slots of `subbuf_size` bytes, each starting with a header. The
//! slots are ordered by `seq`; the frames of slot `k` end at `subbuf_size - prev_padding` of the
//! slot with seq `k + 1`. The slot with the highest seq is being written: its end is unknown, so
//! it is reported as torn and skipped — unless the image is a copy of a live user-space buffer
//! whose control block gave the writer's committed offset ([`LiveEnd`]): then that slot is walked
//! up to it (a writer that died — a crashed flight recorder — left its newest events there), and
//! a frame that crosses it is reported as torn, never decoded. Slots without a header, of another
//! CPU, with a duplicate or stale seq, or whose end cannot be determined are skipped with a
//! warning.

use klog::wire::SubbufHeader;

use crate::metadata::Metadata;
use crate::stats::{Stats, WarningKind};
use crate::stream::Lost;

/// A slot to walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotPlan {
    pub(crate) seq: u64,
    /// Offset of the slot (its header) in the image.
    pub(crate) start: usize,
    /// Offset where its frames end.
    pub(crate) end: usize,
    pub(crate) base_ts: u64,
    pub(crate) lost: u32,
    /// `end` is the writer's committed offset (the slot being written), not a finished
    /// sub-buffer's length: a frame crossing it is torn (the writer stopped inside it).
    pub(crate) committed: bool,
}

/// The writer's committed position in a live buffer image, from its control block: slot `slot`
/// (index in the image) holds the newest bytes, complete up to `committed` bytes from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveEnd {
    /// Slot index of the sub-buffer being written.
    pub slot: usize,
    /// Bytes committed in it (its header included).
    pub committed: usize,
}

/// Orders the slots of an image; returns the slots to walk and the records to report after
/// them (the torn slot's lost count). May relabel `cpu` if no slot is of the expected one.
pub(crate) fn plan(
    meta: &Metadata,
    cpu: &mut u16,
    data: &[u8],
    live: Option<LiveEnd>,
    stats: &mut Stats,
) -> (Vec<SlotPlan>, Vec<Lost>) {
    let ss = meta.header.subbuf_size as usize;
    let n_subbufs = meta.header.n_subbufs as usize;
    let hlen = meta.header.subbuf_header_len();
    if ss <= hlen {
        stats.warn(
            WarningKind::StreamHeader,
            Some(*cpu),
            None,
            format_args!("subbuf_size {ss} is too small to walk a snapshot"),
        );
        return (Vec::new(), Vec::new());
    }
    // A mapping is rounded up to whole pages: bytes past the buffer are ignored.
    let want = n_subbufs.saturating_mul(ss);
    if data.len() < want {
        stats.warn(
            WarningKind::StreamHeader,
            Some(*cpu),
            None,
            format_args!(
                "snapshot of {} bytes, expected n_subbufs {n_subbufs} × subbuf_size {ss}",
                data.len()
            ),
        );
    }
    let n = data.len().min(want) / ss;
    let mut slots: Vec<(usize, SubbufHeader)> = Vec::new();
    for i in 0..n {
        let at = i * ss;
        let raw = &data[at..at + hlen];
        match meta.header.parse_subbuf(raw) {
            Some(h) if meta.header.trace_id.is_some_and(|id| id != h.trace_id) => stats.warn(
                WarningKind::TraceId,
                Some(*cpu),
                Some(at as u64),
                format_args!(
                    "slot {i}: header of another trace (id {:016x}, the metadata's {:016x})",
                    h.trace_id,
                    meta.header.trace_id.unwrap_or(0)
                ),
            ),
            Some(h) => slots.push((i, h)),
            None if raw.iter().all(|&b| b == 0) => {} // never used
            None => stats.warn(
                WarningKind::SlotSkipped,
                Some(*cpu),
                Some(at as u64),
                format_args!("slot {i}: no sub-buffer header"),
            ),
        }
    }
    if !slots.is_empty() && slots.iter().all(|(_, h)| h.cpu != *cpu) {
        let other = slots[0].1.cpu;
        stats.warn(
            WarningKind::StreamHeader,
            Some(*cpu),
            None,
            format_args!("the snapshot of cpu{} holds headers of cpu{other}", *cpu),
        );
        *cpu = other;
    }
    slots.retain(|(i, h)| {
        let ok = h.cpu == *cpu;
        if !ok {
            stats.warn(
                WarningKind::SlotSkipped,
                Some(*cpu),
                Some((i * ss) as u64),
                format_args!("slot {i}: header of cpu{}", h.cpu),
            );
        }
        ok
    });
    slots.sort_by_key(|(i, h)| (h.seq, *i));
    // Duplicate seqs: none of them can be trusted.
    let mut keep = vec![true; slots.len()];
    for k in 1..slots.len() {
        if slots[k].1.seq == slots[k - 1].1.seq {
            keep[k] = false;
            keep[k - 1] = false;
        }
    }
    let mut uniq = Vec::with_capacity(slots.len());
    for (k, s) in slots.into_iter().enumerate() {
        if keep[k] {
            uniq.push(s);
        } else {
            stats.warn(
                WarningKind::SlotSkipped,
                Some(*cpu),
                Some((s.0 * ss) as u64),
                format_args!(
                    "slot {}: seq {} appears in more than one slot",
                    s.0, s.1.seq
                ),
            );
        }
    }
    let Some(&(torn_slot, torn)) = uniq.last() else {
        return (Vec::new(), Vec::new());
    };
    // A buffer of n slots holds the last n sub-buffers at most.
    let oldest = torn.seq.saturating_sub(n as u64 - 1);
    let mut plans = Vec::new();
    for (k, &(i, h)) in uniq.iter().enumerate() {
        let at = i * ss;
        if h.seq == torn.seq {
            break;
        }
        if h.seq < oldest {
            stats.warn(
                WarningKind::SlotSkipped,
                Some(*cpu),
                Some(at as u64),
                format_args!(
                    "slot {i}: seq {} is older than the buffer can hold (newest {})",
                    h.seq, torn.seq
                ),
            );
            continue;
        }
        let next = uniq.get(k + 1).map(|s| s.1);
        let Some(next) = next.filter(|n| h.seq.checked_add(1) == Some(n.seq)) else {
            stats.warn(
                WarningKind::SlotSkipped,
                Some(*cpu),
                Some(at as u64),
                format_args!(
                    "slot {i}: seq {} has no successor, its end is unknown",
                    h.seq
                ),
            );
            continue;
        };
        let len = ss.checked_sub(next.prev_padding as usize);
        match len {
            Some(len) if len >= hlen => plans.push(SlotPlan {
                seq: h.seq,
                start: at,
                end: at + len,
                base_ts: h.base_ts,
                lost: h.lost,
                committed: false,
            }),
            _ => stats.warn(
                WarningKind::SlotSkipped,
                Some(*cpu),
                Some(at as u64),
                format_args!(
                    "slot {i}: seq {}'s successor gives an impossible padding {}",
                    h.seq, next.prev_padding
                ),
            ),
        }
    }
    // The control block says how far the newest slot is written: walk it up to there.
    if let Some(l) = live.filter(|l| l.slot == torn_slot && l.committed <= ss) {
        if l.committed >= hlen {
            let at = torn_slot * ss;
            plans.push(SlotPlan {
                seq: torn.seq,
                start: at,
                end: at + l.committed,
                base_ts: torn.base_ts,
                lost: torn.lost,
                committed: true,
            });
            return (plans, Vec::new());
        }
    }
    stats.warn(
        WarningKind::TornSubbuf,
        Some(*cpu),
        Some((torn_slot * ss) as u64),
        format_args!(
            "slot {torn_slot} (seq {}) is the sub-buffer being written: skipped (flush the \
             channel before taking a snapshot to include it)",
            torn.seq
        ),
    );
    let mut tail = Vec::new();
    if torn.lost > 0 {
        tail.push(Lost {
            cpu: *cpu,
            count: u64::from(torn.lost),
            at_ts: torn.base_ts,
        });
    }
    (plans, tail)
}

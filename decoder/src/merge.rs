//! k-way merge of per-CPU record streams into timestamp order.
//!
//! Stable: equal timestamps come out by CPU, then in stream order; a stream whose timestamps go
//! backwards is not reordered (its records keep their order; the stream reports the warning).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::stream::{CpuStream, Record, RecordRef};

/// Merges record iterators (one per CPU) by raw timestamp.
#[derive(Debug)]
pub struct Merge<I: Iterator<Item = Record>> {
    sources: Vec<I>,
    heads: Vec<Option<Record>>,
    /// (ts, cpu, per-source counter, source index) of each non-empty head.
    heap: BinaryHeap<Reverse<(u64, u16, u64, usize)>>,
    counters: Vec<u64>,
}

impl<I: Iterator<Item = Record>> Merge<I> {
    /// A merge of `sources`.
    pub fn new(sources: Vec<I>) -> Self {
        let n = sources.len();
        let mut m = Merge {
            sources,
            heads: (0..n).map(|_| None).collect(),
            heap: BinaryHeap::with_capacity(n),
            counters: vec![0; n],
        };
        for i in 0..n {
            m.refill(i);
        }
        m
    }

    fn refill(&mut self, i: usize) {
        if let Some(r) = self.sources[i].next() {
            self.heap
                .push(Reverse((r.ts_raw(), r.cpu(), self.counters[i], i)));
            self.counters[i] += 1;
            self.heads[i] = Some(r);
        }
    }

    /// The sources (e.g. to read their statistics).
    pub fn sources(&self) -> &[I] {
        &self.sources
    }

    /// The sources back.
    pub fn into_sources(self) -> Vec<I> {
        self.sources
    }
}

impl<I: Iterator<Item = Record>> Iterator for Merge<I> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        let Reverse((_, _, _, i)) = self.heap.pop()?;
        let r = self.heads[i].take();
        self.refill(i);
        r
    }
}

/// Merges fully decoded per-CPU record lists.
pub fn merge(streams: Vec<Vec<Record>>) -> Vec<Record> {
    Merge::new(streams.into_iter().map(Vec::into_iter).collect()).collect()
}

/// Merge key of a source's head: exhausted sources sort last, then (timestamp, CPU, records
/// taken from the source so far, source index) as in [`Merge`]'s heap.
type Key = (bool, u64, u16, u64, u32);

const DONE: Key = (true, u64::MAX, u16::MAX, u64::MAX, u32::MAX);

/// Records decoded ahead per source of a [`RefMerge`]: decoding runs of frames in a tight loop
/// into a buffer that the merge then reads in place is cheaper than moving each record through
/// the merge.
const AHEAD: usize = 64;

/// The order of [`Merge`] over [`CpuStream::next_ref`] records, as a winner tree of small keys:
/// taking a record replays one leaf-to-root path (`log2(n)` key comparisons) and never moves a
/// record. The same sequence as `Merge` of the same streams.
#[derive(Debug)]
pub struct RefMerge<'a> {
    sources: Vec<CpuStream<'a>>,
    /// Records decoded ahead per source, and the position of its head in them.
    bufs: Vec<Vec<RecordRef<'a>>>,
    pos: Vec<usize>,
    /// One key per source, then [`DONE`] for the padding leaves.
    keys: Vec<Key>,
    counters: Vec<u64>,
    /// `tree[k]` is the winning source of node `k`; leaves at `leaves + i`.
    tree: Vec<u32>,
    leaves: usize,
    /// The source whose head was returned last (advanced on the next call).
    taken: Option<usize>,
    /// The smallest timestamp of the other sources' heads when the tree last chose `taken`
    /// (`u64::MAX` if they are exhausted): while its next record is older, it wins again.
    bar: u64,
}

impl<'a> RefMerge<'a> {
    /// A merge of `sources`.
    pub fn new(sources: Vec<CpuStream<'a>>) -> Self {
        let n = sources.len();
        let leaves = n.max(1).next_power_of_two();
        let mut m = RefMerge {
            sources,
            bufs: (0..n).map(|_| Vec::with_capacity(AHEAD)).collect(),
            pos: vec![0; n],
            keys: vec![DONE; n + 1],
            counters: vec![0; n],
            tree: vec![n as u32; 2 * leaves],
            leaves,
            taken: None,
            bar: 0,
        };
        for i in 0..n {
            m.tree[leaves + i] = i as u32;
            m.fill(i);
            m.set_key(i);
        }
        for k in (1..leaves).rev() {
            m.tree[k] = m.better(m.tree[2 * k], m.tree[2 * k + 1]);
        }
        m
    }

    #[inline]
    fn better(&self, a: u32, b: u32) -> u32 {
        if self.keys[b as usize] < self.keys[a as usize] {
            b
        } else {
            a
        }
    }

    /// Decodes the next records of source `i` (none if it is exhausted).
    fn fill(&mut self, i: usize) {
        let buf = &mut self.bufs[i];
        buf.clear();
        self.sources[i].fill_ref(buf, AHEAD);
        self.pos[i] = 0;
    }

    #[inline(always)]
    fn set_key(&mut self, i: usize) {
        self.keys[i] = match self.bufs[i].get(self.pos[i]) {
            Some(r) => {
                let k = (false, r.ts_raw(), r.cpu(), self.counters[i], i as u32);
                self.counters[i] += 1;
                k
            }
            None => DONE,
        };
    }

    /// Moves source `i` to its next record.
    #[inline]
    fn advance(&mut self, i: usize) {
        self.pos[i] += 1;
        if self.pos[i] >= self.bufs[i].len() {
            self.fill(i);
        }
        self.set_key(i);
        let mut k = (self.leaves + i) / 2;
        while k >= 1 {
            self.tree[k] = self.better(self.tree[2 * k], self.tree[2 * k + 1]);
            k /= 2;
        }
    }

    /// The next record in timestamp order, in place (valid until the next call).
    #[inline]
    pub fn next_in_place(&mut self) -> Option<&RecordRef<'a>> {
        if let Some(i) = self.taken {
            // A run of one source (the common case when one CPU holds most records): its next
            // decoded record, older than every other head, wins again. Its key is below the
            // key of every other subtree's winner, so the tree still names it: no replay. Only
            // its counter moves; the key, which nothing reads meanwhile, is set when the run
            // ends (`advance`).
            let p = self.pos[i] + 1;
            if self.bufs[i].get(p).is_some_and(|r| r.ts_raw() < self.bar) {
                self.pos[i] = p;
                self.counters[i] += 1;
                return self.bufs[i].get(p);
            }
            self.taken = None;
            self.advance(i);
        }
        let w = *self.tree.get(1)? as usize;
        self.bar = self.runner_up(w);
        let r = self.bufs.get(w)?.get(*self.pos.get(w)?)?;
        self.taken = Some(w);
        Some(r)
    }

    /// The smallest timestamp of the heads of the sources other than the winner `w`: the
    /// winners of the subtrees beside its leaf-to-root path.
    fn runner_up(&self, w: usize) -> u64 {
        let mut bar = u64::MAX;
        let mut k = self.leaves + w;
        while k > 1 {
            let (done, ts, ..) = self.keys[self.tree[k ^ 1] as usize];
            if !done {
                bar = bar.min(ts);
            }
            k /= 2;
        }
        bar
    }

    /// The next record in timestamp order.
    #[inline]
    pub fn next_ref(&mut self) -> Option<RecordRef<'a>> {
        self.next_in_place().copied()
    }

    /// The sources (e.g. to read their statistics).
    pub fn sources(&self) -> &[CpuStream<'a>] {
        &self.sources
    }
}

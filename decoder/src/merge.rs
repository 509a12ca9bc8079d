//! k-way merge of per-CPU record streams into timestamp order.
//!
//! Stable: equal timestamps come out by CPU, then in stream order; a stream whose timestamps go
//! backwards is not reordered (its records keep their order; the stream reports the warning).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::stream::Record;

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

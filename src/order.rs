//! Puts the exchanges of all flow workers back into one order that does not
//! depend on how many workers there are, so replay output, inventory and
//! detections are the same with 1 or 16 workers and across runs.
//!
//! Every exchange is stamped where it is completed with an [`OrderKey`]:
//! the capture clock (newest packet time read) and index of the packet that
//! completed it, or the idle-sweep time that ended its flow, then its flow
//! id. Packets reach workers in capture order and each flow lives in one
//! worker, so a worker's keys only grow; after each batch a worker also
//! reports its watermark, the key below which it will emit nothing more.
//! [`OrderedMerge`] holds exchanges until every worker's watermark has
//! passed them, then releases them sorted by key. Memory is bounded by how
//! far workers drift apart, which the bounded packet queues and the reader's
//! regular watermarks limit.

use crate::exchange::Exchange;
use std::collections::VecDeque;

/// Where an exchange sits in the merged output. Ordered by packet-time
/// clock, then the completing packet's index (0 for an idle sweep, which
/// runs before the packets of its instant), then flow id. Several exchanges
/// of one flow completed by one packet share a key and keep their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct OrderKey {
    pub clock_ns: u64,
    pub packet_index: u64,
    pub flow_id: u64,
}

impl OrderKey {
    /// After everything: exchanges of flows still open at the end.
    pub const END: OrderKey = OrderKey {
        clock_ns: u64::MAX,
        packet_index: u64::MAX,
        flow_id: u64::MAX,
    };

    /// The key at or below which a worker has emitted everything, once it
    /// processed all packets read before `packet_index` at clock `clock_ns`.
    pub const fn watermark(clock_ns: u64, packet_index: u64) -> OrderKey {
        OrderKey {
            clock_ns,
            packet_index,
            flow_id: u64::MAX,
        }
    }
}

/// What a worker hands on after a batch.
pub struct WorkerOutput {
    pub worker: usize,
    /// In key order. Boxed from the parser to where the worker frees them
    /// (see [`crate::exchange::Exchanges`]): the merge queues, sorts and
    /// hands them on, and the writer gives them back, so a pointer moves each
    /// time instead of the whole record (those moves were over four fifths
    /// of the writer's work without output).
    pub exchanges: Vec<(OrderKey, Box<Exchange>)>,
    pub watermark: OrderKey,
}

/// The merge; see the module documentation.
pub struct OrderedMerge {
    pending: Vec<VecDeque<(OrderKey, Box<Exchange>)>>,
    watermarks: Vec<OrderKey>,
    /// With the worker each came from.
    ready: Vec<(OrderKey, usize, Box<Exchange>)>,
}

impl OrderedMerge {
    pub fn new(workers: usize) -> Self {
        OrderedMerge {
            pending: (0..workers).map(|_| VecDeque::new()).collect(),
            watermarks: vec![OrderKey::default(); workers],
            ready: Vec::new(),
        }
    }

    /// Exchanges held back, waiting for a slower worker.
    pub fn held(&self) -> usize {
        self.pending.iter().map(VecDeque::len).sum()
    }

    /// Takes one worker's output and passes every exchange that is now
    /// final, in order, to `release` with the worker it came from.
    pub fn accept(&mut self, output: WorkerOutput, release: &mut dyn FnMut(usize, Box<Exchange>)) {
        let (Some(queue), Some(mark)) = (
            self.pending.get_mut(output.worker),
            self.watermarks.get_mut(output.worker),
        ) else {
            // Not a worker of this merge: nothing to wait for.
            let worker = output.worker;
            output
                .exchanges
                .into_iter()
                .for_each(|(_, e)| release(worker, e));
            return;
        };
        queue.extend(output.exchanges);
        *mark = (*mark).max(output.watermark);
        self.release_up_to(self.frontier(), release);
    }

    /// Releases everything held (all workers are done).
    pub fn finish(&mut self, release: &mut dyn FnMut(usize, Box<Exchange>)) {
        self.release_up_to(OrderKey::END, release);
    }

    fn frontier(&self) -> OrderKey {
        self.watermarks
            .iter()
            .copied()
            .min()
            .unwrap_or(OrderKey::END)
    }

    fn release_up_to(&mut self, frontier: OrderKey, release: &mut dyn FnMut(usize, Box<Exchange>)) {
        for (worker, queue) in self.pending.iter_mut().enumerate() {
            while queue.front().is_some_and(|(key, _)| *key <= frontier) {
                if let Some((key, exchange)) = queue.pop_front() {
                    self.ready.push((key, worker, exchange));
                }
            }
        }
        // Stable: one flow's exchanges with equal keys keep their order.
        self.ready.sort_by_key(|(key, _, _)| *key);
        for (_, worker, exchange) in self.ready.drain(..) {
            release(worker, exchange);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(flow_id: u64) -> Box<Exchange> {
        Box::new(Exchange {
            flow_id,
            client: "10.0.0.1:1000".parse().unwrap(),
            server: "10.0.0.2:80".parse().unwrap(),
            request: None,
            response: None,
            tunnel: false,
            flags: Default::default(),
            anomalies: Vec::new(),
        })
    }

    fn key(clock_ns: u64, packet_index: u64, flow_id: u64) -> OrderKey {
        OrderKey {
            clock_ns,
            packet_index,
            flow_id,
        }
    }

    #[test]
    fn waits_for_the_slowest_worker_then_releases_in_key_order() {
        let mut merge = OrderedMerge::new(2);
        let mut out = Vec::new();
        merge.accept(
            WorkerOutput {
                worker: 0,
                exchanges: vec![(key(10, 5, 5), exchange(5)), (key(30, 9, 5), exchange(50))],
                watermark: OrderKey::watermark(30, 9),
            },
            &mut |w, e| out.push((w, e.flow_id)),
        );
        assert!(out.is_empty(), "worker 1 has said nothing yet");
        assert_eq!(merge.held(), 2);
        merge.accept(
            WorkerOutput {
                worker: 1,
                exchanges: vec![(key(20, 7, 7), exchange(7))],
                watermark: OrderKey::watermark(20, 7),
            },
            &mut |w, e| out.push((w, e.flow_id)),
        );
        assert_eq!(out, vec![(0, 5), (1, 7)], "each with its worker");
        merge.finish(&mut |w, e| out.push((w, e.flow_id)));
        assert_eq!(out, vec![(0, 5), (1, 7), (0, 50)]);
    }

    #[test]
    fn equal_keys_sort_by_flow_and_keep_one_flows_order() {
        let mut merge = OrderedMerge::new(1);
        let mut out = Vec::new();
        let mut first = exchange(9);
        first.tunnel = true;
        merge.accept(
            WorkerOutput {
                worker: 0,
                exchanges: vec![
                    (key(5, 0, 9), first),
                    (key(5, 0, 3), exchange(3)),
                    (key(5, 0, 9), exchange(9)),
                ],
                watermark: OrderKey::END,
            },
            &mut |_, e| out.push((e.flow_id, e.tunnel)),
        );
        assert_eq!(out, vec![(3, false), (9, true), (9, false)]);
    }
}

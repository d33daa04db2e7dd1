//! Ranks as threads of one process, exchanging through host memory: the group that tests the
//! sharding without GPUs, and that runs a model split over CPU ranks.

use super::communicator::{host_prefix, Communicator};
use crate::backend::Backend;
use crate::error::{Error, Result};
use std::sync::{Arc, Condvar, Mutex};

/// One rank's handle on a group of threads. Dropping it (a rank that returns early, with an
/// error or a panic) makes every collective the others are waiting in fail, instead of hang.
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    state: Mutex<Round>,
    changed: Condvar,
}

/// The collective in progress: what each rank brought, and the last complete round's.
#[derive(Default)]
struct Round {
    brought: Vec<Option<Vec<f32>>>,
    arrived: usize,
    generation: u64,
    results: Arc<Vec<Vec<f32>>>,
    left: Option<usize>,
}

impl ThreadGroup {
    /// The handles of a new group of `size` ranks, one per rank, in rank order.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(Round {
                brought: vec![None; size],
                ..Round::default()
            }),
            changed: Condvar::new(),
        });
        (0..size)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Brings `data` to the current round and returns what every rank brought, in rank
    /// order, once all have.
    fn exchange(&self, data: Vec<f32>) -> Result<Arc<Vec<Vec<f32>>>> {
        let shared = &self.shared;
        let mut round = shared
            .state
            .lock()
            .expect("a rank panicked holding the group");
        if let Some(rank) = round.left {
            return Err(left(rank));
        }
        round.brought[self.rank] = Some(data);
        round.arrived += 1;
        if round.arrived == shared.size {
            let brought = round
                .brought
                .iter_mut()
                .map(|b| b.take().unwrap_or_default());
            round.results = Arc::new(brought.collect());
            round.arrived = 0;
            round.generation += 1;
            shared.changed.notify_all();
            return Ok(round.results.clone());
        }
        let generation = round.generation;
        while round.generation == generation {
            if let Some(rank) = round.left {
                return Err(left(rank));
            }
            round = shared
                .changed
                .wait(round)
                .expect("a rank panicked holding the group");
        }
        Ok(round.results.clone())
    }
}

impl ThreadGroup {
    /// Brings the first `len` values of `buffer` to a round; what every rank brought.
    fn bring<B: Backend>(
        &self,
        backend: &B,
        buffer: &B::Buffer,
        len: usize,
    ) -> Result<Arc<Vec<Vec<f32>>>> {
        self.exchange(host_prefix(backend, buffer, len)?)
    }
}

fn left(rank: usize) -> Error {
    Error::Parallel(format!("rank {rank} stopped before the others"))
}

impl Drop for ThreadGroup {
    fn drop(&mut self) {
        if let Ok(mut round) = self.shared.state.lock() {
            round.left.get_or_insert(self.rank);
            self.shared.changed.notify_all();
        }
    }
}

impl<B: Backend> Communicator<B> for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_gather(
        &self,
        backend: &B,
        send: &B::Buffer,
        count: usize,
        recv: &mut B::Buffer,
    ) -> Result<()> {
        let all = self.bring(backend, send, count)?;
        backend.write(&all.concat(), recv)
    }

    fn reduce_scatter(
        &self,
        backend: &B,
        send: &B::Buffer,
        count: usize,
        recv: &mut B::Buffer,
    ) -> Result<()> {
        let all = self.bring(backend, send, count * self.shared.size)?;
        let part = self.rank * count..(self.rank + 1) * count;
        backend.write(&sum(&all, part), recv)
    }

    fn all_reduce(&self, backend: &B, buffer: &mut B::Buffer, len: usize) -> Result<()> {
        let all = self.bring(backend, buffer, len)?;
        backend.write(&sum(&all, 0..len), buffer)
    }
}

/// The sum over ranks of `range` of what each brought, added in rank order so that every
/// rank gets the same bits.
fn sum(all: &[Vec<f32>], range: std::ops::Range<usize>) -> Vec<f32> {
    let mut total = all[0][range.clone()].to_vec();
    for other in &all[1..] {
        total
            .iter_mut()
            .zip(&other[range.clone()])
            .for_each(|(t, o)| *t += o);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;

    #[test]
    fn collectives_of_three_threads() {
        type Collected = (Vec<f32>, Vec<f32>, Vec<f32>);
        let results: Vec<Result<Collected>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ThreadGroup::new(3)
                .into_iter()
                .map(|group| {
                    scope.spawn(move || {
                        let cpu = CpuBackend::new();
                        let r = group.rank as f32;
                        let mut gathered = vec![0.0; 7];
                        let send = vec![r, r + 0.5, 99.0];
                        Communicator::<CpuBackend>::all_gather(
                            &group,
                            &cpu,
                            &send,
                            2,
                            &mut gathered,
                        )?;
                        let mut scattered = vec![0.0; 2];
                        let parts: Vec<f32> = (0..6).map(|i| i as f32 * (r + 1.0)).collect();
                        group.reduce_scatter(&cpu, &parts, 2, &mut scattered)?;
                        let mut reduced = vec![r, 1.0, 5.0];
                        group.all_reduce(&cpu, &mut reduced, 2)?;
                        Ok((gathered, scattered, reduced))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (rank, result) in results.into_iter().enumerate() {
            let (gathered, scattered, reduced) = result.unwrap();
            assert_eq!(gathered, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 0.0]);
            // Ranks bring i * (r + 1): the sum over ranks is 6 i.
            let first = 2 * rank;
            assert_eq!(
                scattered,
                vec![6.0 * first as f32, 6.0 * (first + 1) as f32]
            );
            assert_eq!(reduced, vec![3.0, 3.0, 5.0]);
        }
    }

    #[test]
    fn a_rank_that_stops_fails_the_others_instead_of_hanging() {
        let mut groups = ThreadGroup::new(2);
        let second = groups.pop().unwrap();
        let first = groups.pop().unwrap();
        let waiting = std::thread::spawn(move || {
            let cpu = CpuBackend::new();
            let mut buffer = vec![1.0];
            first.all_reduce(&cpu, &mut buffer, 1)
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(second);
        let message = waiting.join().unwrap().unwrap_err().to_string();
        assert!(message.contains("rank 1 stopped"), "{message}");
    }
}

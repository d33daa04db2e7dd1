//! Overlaps preparing the next batch on the host with computing the current one.

/// Calls `consume(i, produce(i))` for `i` in `0..count`, producing up to two items ahead on a
/// second thread. Stops at the first error of `consume`.
pub fn pipelined<T: Send, E>(
    count: usize,
    produce: impl Fn(usize) -> T + Sync,
    mut consume: impl FnMut(usize, T) -> Result<(), E>,
) -> Result<(), E> {
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<T>(2);
        let produce = &produce;
        scope.spawn(move || {
            for i in 0..count {
                // The consumer hung up after an error: stop producing.
                if sender.send(produce(i)).is_err() {
                    return;
                }
            }
        });
        receiver
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| consume(i, item))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumes_in_order_and_stops_at_errors() {
        let mut seen = Vec::new();
        pipelined(
            5,
            |i| i * 10,
            |i, v| {
                seen.push((i, v));
                Ok::<(), ()>(())
            },
        )
        .unwrap();
        assert_eq!(seen, vec![(0, 0), (1, 10), (2, 20), (3, 30), (4, 40)]);
        let result = pipelined(1000, |i| i, |i, _| if i == 3 { Err(i) } else { Ok(()) });
        assert_eq!(result, Err(3));
    }
}

//! `--timings`: the wall time of each phase of a command, printed to standard error at its
//! end, so that a user sees where a command's time goes (starting a GPU, reading, the
//! device's work, writing) and a benchmark can set the device's part beside the whole.

use std::sync::Mutex;
use std::time::Instant;

/// Laps of a command: each [`Timings::lap`] records the time since the previous one (or
/// since the start) under a name. Shared by the threads of a command's ranks; only the
/// laps of the caller's choosing (rank 0's) are recorded.
pub struct Timings {
    enabled: bool,
    start: Instant,
    laps: Mutex<(Instant, Vec<(&'static str, f64)>)>,
}

impl Timings {
    /// Starts the clock; records nothing unless `enabled`.
    pub fn new(enabled: bool) -> Self {
        let now = Instant::now();
        Timings {
            enabled,
            start: now,
            laps: Mutex::new((now, Vec::new())),
        }
    }

    /// Ends the phase `name`: the time since the previous lap.
    pub fn lap(&self, name: &'static str) {
        if !self.enabled {
            return;
        }
        let mut laps = self.laps.lock().expect("a timed phase panicked");
        let now = Instant::now();
        let seconds = now.duration_since(laps.0).as_secs_f64();
        laps.0 = now;
        laps.1.push((name, seconds));
    }

    /// The laps and the total, on one line: `destiny: timings: NAME 0.123 s, ...; total T s`.
    pub fn line(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let laps = self.laps.lock().expect("a timed phase panicked");
        let phases: Vec<String> = laps
            .1
            .iter()
            .map(|(name, seconds)| format!("{name} {seconds:.3} s"))
            .collect();
        Some(format!(
            "destiny: timings: {}; total {:.3} s",
            phases.join(", "),
            self.start.elapsed().as_secs_f64()
        ))
    }

    /// Prints [`Timings::line`] to standard error.
    pub fn report(&self) {
        if let Some(line) = self.line() {
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn laps_add_up_to_at_most_the_total_in_order() {
        let timings = Timings::new(true);
        std::thread::sleep(Duration::from_millis(20));
        timings.lap("first");
        std::thread::sleep(Duration::from_millis(10));
        timings.lap("second");
        let line = timings.line().unwrap();
        let laps = timings.laps.lock().unwrap().1.clone();
        assert_eq!(
            laps.iter().map(|l| l.0).collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert!(laps[0].1 >= 0.020 && laps[1].1 >= 0.010, "{laps:?}");
        let total: f64 = line
            .rsplit("total ")
            .next()
            .and_then(|t| t.strip_suffix(" s"))
            .unwrap()
            .parse()
            .unwrap();
        assert!(total + 1e-3 >= laps[0].1 + laps[1].1, "{line}");
        assert!(line.starts_with("destiny: timings: first "), "{line}");
    }

    #[test]
    fn nothing_is_recorded_unless_asked() {
        let timings = Timings::new(false);
        timings.lap("first");
        assert!(timings.line().is_none());
    }
}

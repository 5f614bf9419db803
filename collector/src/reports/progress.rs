//! Progress on stderr for reports that take more than a second: nothing is printed for quick
//! ones, so scripts reading a small report see a clean terminal.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A ticker thread printing the current stage once a second after the first second.
pub struct Progress {
    stage: Arc<Mutex<&'static str>>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Prints on stderr.
    pub fn start(what: String) -> Self {
        Self::start_to(what, Box::new(std::io::stderr()))
    }

    /// Prints on `out` (tests pass a buffer).
    pub fn start_to(what: String, mut out: Box<dyn Write + Send>) -> Self {
        let stage = Arc::new(Mutex::new("démarrage"));
        let done = Arc::new(AtomicBool::new(false));
        let (s, d) = (stage.clone(), done.clone());
        let thread = std::thread::Builder::new()
            .name("report-progress".into())
            .spawn(move || {
                let t0 = Instant::now();
                let mut next = Duration::from_secs(1);
                while !d.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if t0.elapsed() >= next && !d.load(Ordering::Relaxed) {
                        let st = *s.lock().unwrap_or_else(|p| p.into_inner());
                        let _ = writeln!(out, "{what}: {st}… {} s", t0.elapsed().as_secs());
                        next += Duration::from_secs(1);
                    }
                }
            })
            .ok();
        Self {
            stage,
            done,
            thread,
        }
    }

    pub fn stage(&self, s: &'static str) {
        *self.stage.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn silent_under_a_second_then_one_line_a_second() {
        let buf = Buf::default();
        let p = Progress::start_to("report 2026".into(), Box::new(buf.clone()));
        p.stage("lecture");
        std::thread::sleep(Duration::from_millis(600));
        assert!(buf.0.lock().unwrap().is_empty());
        std::thread::sleep(Duration::from_millis(900));
        p.stage("calcul");
        std::thread::sleep(Duration::from_millis(1400));
        p.finish();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            ["report 2026: lecture… 1 s", "report 2026: calcul… 2 s"],
            "{text}"
        );
    }
}

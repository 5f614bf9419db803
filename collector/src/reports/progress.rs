//! Progress on stderr for reports that take more than a second: nothing is printed for quick
//! ones, so scripts reading a small report see a clean terminal.

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
    pub fn start(what: String) -> Self {
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
                        eprintln!("{what}: {st}… {:.0} s", t0.elapsed().as_secs_f64());
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

//! The audit writer: a thread that takes events off the queue and writes their lines. Woken by
//! the first event after a quiet spell, it lets [`GATHER`] pass before it takes the queue's
//! events and writes them in one go: under load that is one wake-up and one `write` per batch,
//! not per line (a wake-up and a write per line cost the data path a tenth of a CPU at 4
//! signing threads), and a line is at most [`GATHER`] late. Idle, it waits: no CPU at rest.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::warn;

use super::line::{self, Pod};
use super::{Event, Kind};
use crate::metrics::Metrics;

/// Where the lines go.
#[derive(Clone, Debug)]
pub enum Output {
    Stdout,
    /// Appended to; created with mode 0600.
    File(PathBuf),
}

/// Bytes gathered before a write even while the queue is not empty.
const BATCH_BYTES: usize = 64 * 1024;

/// How long the writer lets events gather after it is woken.
pub const GATHER: Duration = Duration::from_millis(20);

pub fn spawn(
    output: Output,
    pod: Pod,
    queue: Receiver<Event>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
) -> io::Result<()> {
    let sink: Box<dyn Write + Send> = match &output {
        Output::Stdout => Box::new(io::stdout()),
        Output::File(path) => Box::new(OpenOptions::new().append(true).create(true).mode(0o600).open(path)?),
    };
    std::thread::Builder::new()
        .name("audit".into())
        .spawn(move || run(sink, pod, queue, queued, dropped, metrics))?;
    Ok(())
}

fn run(
    mut sink: Box<dyn Write + Send>,
    pod: Pod,
    queue: Receiver<Event>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
) {
    let mut buf = Vec::with_capacity(BATCH_BYTES);
    let mut lines = 0u64;
    let mut failed = false;
    // Whether the last batch emptied the queue: then the next event ends a quiet spell.
    let mut emptied = true;
    while let Ok(first) = queue.recv() {
        if emptied {
            std::thread::sleep(GATHER);
        }
        emptied = false;
        let mut next = Some(first);
        while let Some(event) = next.take() {
            queued.fetch_sub(1, Ordering::Relaxed);
            line::write(&mut buf, &pod, &event);
            lines += 1;
            if buf.len() >= BATCH_BYTES {
                break;
            }
            next = queue.try_recv().ok();
            emptied = next.is_none();
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let event = Event {
                time: SystemTime::now(),
                kind: Kind::Dropped,
                app: None,
                caller: None,
                function: "",
                mechanism: None,
                key: None,
                object: None,
                result: cryptoki_sys::CKR_OK,
                detail: Some(format!("{lost} events dropped: the audit queue was full")),
            };
            line::write(&mut buf, &pod, &event);
            lines += 1;
        }
        match sink.write_all(&buf).and_then(|()| sink.flush()) {
            Ok(()) => {
                metrics.audit_written(lines);
                failed = false;
            }
            Err(e) => {
                if !failed {
                    warn!(error = %e, lines, "cannot write the audit trail");
                }
                failed = true;
                // Lost as surely as a full queue's: counted the same way.
                metrics.audit_dropped(lines);
            }
        }
        buf.clear();
        lines = 0;
    }
}

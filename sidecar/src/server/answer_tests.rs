use std::collections::VecDeque;

use super::*;

/// A socket that takes what `takes` says, one entry per write (then everything), and records
/// every timeout set.
#[derive(Default)]
struct Fake {
    takes: VecDeque<io::Result<usize>>,
    written: Vec<u8>,
    timeouts: Vec<Option<Duration>>,
}

impl TimedWrite for Fake {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.takes.pop_front() {
            Some(Ok(n)) => n.min(buf.len()),
            Some(Err(e)) => return Err(e),
            None => buf.len(),
        };
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeouts.push(timeout);
        Ok(())
    }
}

const LIMIT: Duration = Duration::from_secs(5);

#[test]
fn an_answer_taken_at_once_sets_no_timeout() {
    let mut fake = Fake::default();
    assert_eq!(write_all_within(&mut fake, b"answer", LIMIT).unwrap(), 6);
    assert_eq!(fake.written, b"answer");
    assert!(fake.timeouts.is_empty(), "set {:?}", fake.timeouts);
}

#[test]
fn after_a_short_write_the_rest_gets_what_is_left_and_the_limit_comes_back() {
    let mut fake = Fake {
        takes: [Ok(2), Ok(1)].into(),
        ..Fake::default()
    };
    assert_eq!(write_all_within(&mut fake, b"answer", LIMIT).unwrap(), 6);
    assert_eq!(fake.written, b"answer");
    let (restored, shortened) = fake.timeouts.split_last().unwrap();
    assert_eq!(*restored, Some(LIMIT));
    assert_eq!(shortened.len(), 2, "{:?}", fake.timeouts);
    assert!(shortened.iter().all(|t| t.is_some_and(|t| t < LIMIT && !t.is_zero())));
}

#[test]
fn an_interrupted_write_is_retried() {
    let mut fake = Fake {
        takes: [Err(io::ErrorKind::Interrupted.into())].into(),
        ..Fake::default()
    };
    assert_eq!(write_all_within(&mut fake, b"answer", LIMIT).unwrap(), 6);
    assert_eq!(fake.timeouts.last(), Some(&Some(LIMIT)));
}

#[test]
fn a_peer_that_stops_reading_ends_the_answer_and_the_limit_comes_back() {
    let mut fake = Fake {
        takes: [Ok(1), Err(io::ErrorKind::WouldBlock.into())].into(),
        ..Fake::default()
    };
    let err = write_all_within(&mut fake, b"answer", LIMIT).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(fake.timeouts.last(), Some(&Some(LIMIT)));
}

#[test]
fn a_zero_write_is_an_error() {
    let mut fake = Fake {
        takes: [Ok(0)].into(),
        ..Fake::default()
    };
    let err = write_all_within(&mut fake, b"answer", LIMIT).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WriteZero);
}

#[test]
fn a_deadline_passed_between_writes_is_a_timeout() {
    let mut fake = Fake {
        takes: [Ok(1)].into(),
        ..Fake::default()
    };
    let err = write_all_within(&mut fake, b"answer", Duration::ZERO).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

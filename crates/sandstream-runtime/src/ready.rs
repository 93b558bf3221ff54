//! Waiting for a new sandbox's agent to accept connections, for both backends.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long one connection attempt may take: a refused one returns at once, this only
/// bounds an attempt whose packets get no answer.
const ATTEMPT: Duration = Duration::from_millis(200);

/// Tries to connect to `addr` every `poll` until it accepts, giving up once `timeout`
/// has passed. Ok with how long it took; Err with how long it waited in vain.
pub(crate) fn wait(addr: SocketAddr, timeout: Duration, poll: Duration) -> Result<Duration, Duration> {
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, ATTEMPT).is_err() {
        if started.elapsed() > timeout {
            return Err(started.elapsed());
        }
        std::thread::sleep(poll);
    }
    Ok(started.elapsed())
}

/// Whether `addr` accepts a connection now, waiting at most `within` for it.
pub(crate) fn answers(addr: SocketAddr, within: Duration) -> bool {
    TcpStream::connect_timeout(&addr, within).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_listener_is_found_and_a_closed_port_is_waited_for_until_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let open = listener.local_addr().expect("addr");
        assert!(wait(open, Duration::from_secs(5), Duration::from_millis(1)).is_ok());
        assert!(answers(open, Duration::from_secs(1)));

        drop(listener);
        // Nothing listens there any more: every attempt is refused.
        let timeout = Duration::from_millis(50);
        let waited = wait(open, timeout, Duration::from_millis(1)).expect_err("nothing listens");
        assert!(waited > timeout, "gave up after {waited:?}, before the timeout");
        assert!(!answers(open, Duration::from_secs(1)));
    }
}

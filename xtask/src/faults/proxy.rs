//! A TCP proxy between one host and PostgreSQL that the campaign can freeze (bytes
//! stop flowing, no socket closes: a paused server or a stalled network path) or cut
//! (every connection closed and new ones refused: a lost network), then restore. The
//! threaded twin of `tests/common/proxy.rs` (xtask has no async runtime).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Mode {
    Forward = 0,
    Frozen = 1,
    Cut = 2,
}

pub(super) struct Proxy {
    /// Where clients connect (on 127.0.0.1).
    pub port: u16,
    mode: Arc<AtomicU8>,
    /// Both ends of every connection, to close them when cut.
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub(super) fn start(upstream: &str) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let mode = Arc::new(AtomicU8::new(Mode::Forward as u8));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let upstream = upstream.to_owned();
        let (watching, streams) = (mode.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if watching.load(Ordering::Relaxed) == Mode::Cut as u8 {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                {
                    let mut open = streams.lock().expect("proxy");
                    open.retain(|s| s.peer_addr().is_ok());
                    if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                        open.push(a);
                        open.push(b);
                    }
                }
                let (m1, m2) = (watching.clone(), watching.clone());
                std::thread::spawn(move || pump(client, s2, &m1));
                std::thread::spawn(move || pump(server, c2, &m2));
            }
        });
        Ok(Proxy { port, mode, open })
    }

    pub(super) fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
        if mode == Mode::Cut {
            for stream in self.open.lock().expect("proxy").drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Copies `from` to `to` while forwarding; holds the bytes while frozen; closes both
/// when cut or when either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, mode: &AtomicU8) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match mode.load(Ordering::Relaxed) {
            m if m == Mode::Cut as u8 => break,
            m if m == Mode::Frozen as u8 => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            _ => {}
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                // Read before a freeze began: still delivered, as a network would.
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

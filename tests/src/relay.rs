//! A TCP relay that delays everything it carries, both ways, by a fixed time: the delay of a
//! network path (this kernel has no `tc netem`). Order and bytes are kept; only time is added.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Relays running on their own runtime; dropped, they stop.
#[derive(Debug)]
pub struct DelayRelays {
    runtime: tokio::runtime::Runtime,
}

impl DelayRelays {
    /// A runtime for relays.
    pub fn new() -> DelayRelays {
        DelayRelays {
            runtime: tokio::runtime::Runtime::new().expect("a tokio runtime"),
        }
    }

    /// Listens on `listen` (port 0 for any) and relays every connection to `target`, each byte
    /// `delay` later than it arrived. Returns the address it listens on.
    pub fn start(&self, listen: SocketAddr, target: SocketAddr, delay: Duration) -> SocketAddr {
        let listener = self
            .runtime
            .block_on(TcpListener::bind(listen))
            .expect("the relay binds");
        let addr = listener.local_addr().expect("an address");
        self.runtime.spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::spawn(pump(ri, wo, delay));
                    tokio::spawn(pump(ro, wi, delay));
                });
            }
        });
        addr
    }
}

impl Default for DelayRelays {
    fn default() -> DelayRelays {
        DelayRelays::new()
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read; ends when either side does.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at + delay).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now(), buf.get(..n).unwrap_or_default().to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

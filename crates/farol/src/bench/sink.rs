//! `farol bench smtp-sink`: a minimal, fast SMTP server for benchmarks. It accepts every
//! message, keeps nothing but a count and the time of the last message, and answers on its
//! standard input: `REPORT` prints `{"messages": n, "last_ms": t, "connections": c}` (t: epoch
//! ms, fractional) as one JSON line; end of input stops it. aiosmtpd (scripts/smtp_sink.py,
//! used by the tests) takes about 0.6 ms of CPU per message, too slow to measure 2,000
//! messages/s on a 2-core machine shared with the sender.
//!
//! It speaks just enough SMTP for a client like lettre: greeting, EHLO/HELO (advertising
//! 8BITMIME, SMTPUTF8 and PIPELINING), MAIL, RCPT, DATA (up to the `.` line), RSET, NOOP,
//! QUIT. No TLS, no AUTH.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Counters shared by the connections.
#[derive(Debug, Default)]
struct Stats {
    messages: AtomicU64,
    /// Epoch microseconds of the last message accepted.
    last_us: AtomicU64,
    connections: AtomicU64,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Runs the sink on 127.0.0.1:`port` until standard input ends.
pub async fn run(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("PORT {}", listener.local_addr()?.port());
    let stats = Arc::new(Stats::default());
    {
        let stats = stats.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                stats.connections.fetch_add(1, Ordering::Relaxed);
                let _ = socket.set_nodelay(true);
                tokio::spawn(session(socket, stats.clone()));
            }
        });
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "REPORT" {
            println!(
                "{}",
                serde_json::json!({
                    "messages": stats.messages.load(Ordering::SeqCst),
                    "last_ms": stats.last_us.load(Ordering::SeqCst) as f64 / 1000.0,
                    "connections": stats.connections.load(Ordering::SeqCst),
                })
            );
        }
    }
    Ok(())
}

async fn session(socket: TcpStream, stats: Arc<Stats>) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    write.write_all(b"220 sink.bench ESMTP\r\n").await?;
    let mut line = Vec::with_capacity(1024);
    let mut in_data = false;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if in_data {
            if line == b".\r\n" || line == b".\n" {
                in_data = false;
                let n = stats.messages.fetch_add(1, Ordering::SeqCst) + 1;
                stats.last_us.fetch_max(now_us(), Ordering::SeqCst);
                write
                    .write_all(format!("250 OK queued as bench-{n}\r\n").as_bytes())
                    .await?;
            }
            continue;
        }
        let verb = line
            .get(..4)
            .map(|v| v.to_ascii_uppercase())
            .unwrap_or_default();
        let reply: &[u8] = match verb.as_slice() {
            b"EHLO" => b"250-sink.bench\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n",
            b"HELO" => b"250 sink.bench\r\n",
            b"DATA" => {
                in_data = true;
                b"354 end with <CRLF>.<CRLF>\r\n"
            }
            b"QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" => b"250 OK\r\n",
            _ => b"502 command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

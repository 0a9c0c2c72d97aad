//! The log channel: one JSON line per message.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use herald_core::channel::DeliveryChannel;
use herald_domain::{DeliveryOutcome, MessageRequest};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

enum Sink {
    Stdout,
    File {
        path: PathBuf,
        file: Mutex<Option<tokio::fs::File>>,
    },
    /// Discards lines (benchmarks).
    Null,
}

pub struct LogChannel {
    sink: Sink,
}

impl LogChannel {
    pub fn stdout() -> LogChannel {
        LogChannel { sink: Sink::Stdout }
    }

    pub fn null() -> LogChannel {
        LogChannel { sink: Sink::Null }
    }

    /// Appends to `path` (created when missing).
    pub fn file(path: &Path) -> LogChannel {
        LogChannel {
            sink: Sink::File {
                path: path.to_path_buf(),
                file: Mutex::new(None),
            },
        }
    }

    /// `-` or `stdout`, `null`, or a file path.
    pub fn from_target(target: &str) -> LogChannel {
        match target {
            "-" | "stdout" => LogChannel::stdout(),
            "null" | "/dev/null" => LogChannel::null(),
            path => LogChannel::file(Path::new(path)),
        }
    }
}

#[async_trait]
impl DeliveryChannel for LogChannel {
    async fn deliver(&self, r: &MessageRequest, attempt: u32) -> DeliveryOutcome {
        let line = serde_json::json!({
            "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "id": r.id,
            "tenant": r.tenant,
            "recipient": r.recipient,
            "subject": r.subject,
            "body": r.body,
            "metadata": r.metadata,
            "attempt": attempt,
        })
        .to_string()
            + "\n";
        let written = match &self.sink {
            Sink::Null => Ok(()),
            Sink::Stdout => {
                let mut out = tokio::io::stdout();
                match out.write_all(line.as_bytes()).await {
                    Ok(()) => out.flush().await,
                    Err(e) => Err(e),
                }
            }
            Sink::File { path, file } => {
                let mut guard = file.lock().await;
                if guard.is_none() {
                    match tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .await
                    {
                        Ok(f) => *guard = Some(f),
                        Err(e) => {
                            return DeliveryOutcome::Rejected {
                                error: format!("cannot open log file {}: {e}", path.display()),
                                retryable: true,
                                retry_after_ms: None,
                            };
                        }
                    }
                }
                match guard.as_mut() {
                    Some(f) => match f.write_all(line.as_bytes()).await {
                        Ok(()) => f.flush().await,
                        Err(e) => Err(e),
                    },
                    None => Ok(()),
                }
            }
        };
        match written {
            Ok(()) => DeliveryOutcome::Accepted {
                receipt: "logged".into(),
            },
            Err(e) => DeliveryOutcome::Rejected {
                error: format!("log write failed: {e}"),
                retryable: true,
                retry_after_ms: None,
            },
        }
    }
}

//! Bandwidth limits as a layer around any backend (`--limit-upload`, `--limit-download`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Backend, FileType};
use crate::error::Result;

/// A token bucket of one direction: each transfer waits until its bytes fit the rate.
struct RateLimit {
    bytes_per_second: u64,
    next_free: Mutex<Instant>,
}

impl RateLimit {
    fn new(bytes_per_second: u64) -> RateLimit {
        RateLimit {
            bytes_per_second: bytes_per_second.max(1),
            next_free: Mutex::new(Instant::now()),
        }
    }

    fn take(&self, bytes: u64) {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        let wait = {
            let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + cost;
            start + cost - now
        };
        std::thread::sleep(wait);
    }
}

/// Limits the bytes per second written to and read from `inner`.
pub struct RateLimited {
    inner: Arc<dyn Backend>,
    upload: Option<RateLimit>,
    download: Option<RateLimit>,
}

impl RateLimited {
    /// `inner` itself when there is no limit.
    pub fn wrap(
        inner: Arc<dyn Backend>,
        upload: Option<u64>,
        download: Option<u64>,
    ) -> Arc<dyn Backend> {
        if upload.is_none() && download.is_none() {
            return inner;
        }
        Arc::new(RateLimited {
            inner,
            upload: upload.map(RateLimit::new),
            download: download.map(RateLimit::new),
        })
    }

    fn downloaded(&self, bytes: u64) {
        if let Some(l) = &self.download {
            l.take(bytes);
        }
    }
}

impl Backend for RateLimited {
    crate::forward_backend!(inner: location, create, location_exists, foreign_contents, stat,
        prefetch, list, modified, remove, readable_by_others, remove_leftovers);

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>> {
        let data = self.inner.read(t, name)?;
        self.downloaded(data.len() as u64);
        Ok(data)
    }

    fn read_range(&self, t: FileType, name: &str, offset: u64, length: u64) -> Result<Vec<u8>> {
        let data = self.inner.read_range(t, name, offset, length)?;
        self.downloaded(length);
        Ok(data)
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<()> {
        if let Some(l) = &self.upload {
            l.take(data.len() as u64);
        }
        self.inner.write(t, name, data)
    }
}

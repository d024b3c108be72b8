//! Spill files: a table's chunks read ahead for the connection loading it in one transaction, kept on local
//! disk when the memory for them is spent (`framed_restore`).
//!
//! A spill file is unlinked from the start (`tempfile::tempfile`), so its blocks go back to the disk when its
//! last handle does, however the restore ends. Its whole size is reserved when it is made (`fallocate`), so
//! writing it cannot run the disk out halfway through a table; a file that cannot be reserved is not made, and
//! the table loads side by side instead. It is made only where it leaves room: never on memory-backed storage
//! (a tmpfs would hold it in the memory the drill's own target bounds), never past what the restore may hold
//! (`cap`), and only in half of what the disk has free beyond what the rest of the restore will still write.

use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use super::local_scratch::Filesystem;

/// One table's spill file, counted in the restore's spilled bytes until its last handle goes.
pub(super) struct SpillFile {
    file: std::fs::File,
    reserved: u64,
    spilled: Arc<AtomicU64>,
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        self.spilled.fetch_sub(self.reserved, Ordering::SeqCst);
    }
}

impl SpillFile {
    /// A file of `len` bytes in the temp directory, or none (the table then loads side by side): when the
    /// restore's spill files would hold more than `cap`, when the directory is memory-backed or lacks the room
    /// (half of what is free beyond `still_to_write`, what the rest of the restore may yet write there), or when
    /// the file cannot be made or reserved. `spilled` counts what the restore's files hold.
    pub(super) fn reserve(len: u64, cap: u64, still_to_write: u64, spilled: &Arc<AtomicU64>) -> Option<SpillFile> {
        let dir = std::env::temp_dir();
        if spilled.load(Ordering::SeqCst).saturating_add(len) > cap || len > room(&dir, still_to_write)? {
            return None;
        }
        let made = tempfile::tempfile_in(&dir).and_then(|file| {
            // SAFETY: fallocate on an open descriptor of ours; it only allocates the file's blocks.
            match unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) } {
                0 => Ok(file),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
        match made {
            Ok(file) => {
                spilled.fetch_add(len, Ordering::SeqCst);
                Some(SpillFile { file, reserved: len, spilled: spilled.clone() })
            }
            Err(e) => {
                let dir = dir.display();
                warn!(%dir, bytes = len, error = %e, "no spill file for a big table's rows; it loads side by side");
                None
            }
        }
    }

    /// Writes `stored` at `offset`, within what was reserved.
    pub(super) async fn write_at(self: &Arc<Self>, offset: u64, stored: Bytes) -> Result<(), String> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.file.write_all_at(&stored, offset))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("writing rows read ahead to their spill file in {} failed: {e}", temp_dir()))
    }

    /// Reads `len` bytes back from `offset`.
    pub(super) async fn read_at(self: &Arc<Self>, offset: u64, len: u64) -> Result<Bytes, String> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut stored = vec![0u8; len as usize];
            this.file.read_exact_at(&mut stored, offset).map(|()| Bytes::from(stored))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("reading rows read ahead back from their spill file in {} failed: {e}", temp_dir()))
    }
}

fn temp_dir() -> String {
    std::env::temp_dir().display().to_string()
}

/// Half of what `dir`'s filesystem has free beyond `still_to_write`; none for memory-backed storage or when it
/// cannot be asked.
fn room(dir: &Path, still_to_write: u64) -> Option<u64> {
    let Filesystem { memory_backed: false, free } = Filesystem::of(dir)? else { return None };
    Some(free.saturating_sub(still_to_write) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spill_file_reserves_its_size_counts_it_until_dropped_and_reads_back_what_was_written() {
        let spilled = Arc::new(AtomicU64::new(0));
        let Some(file) = SpillFile::reserve(1 << 20, u64::MAX, 0, &spilled) else {
            // A temp directory on tmpfs, or full: nothing to test on this machine.
            eprintln!("no spill file in {}: skipped", temp_dir());
            return;
        };
        let file = Arc::new(file);
        assert_eq!(spilled.load(Ordering::SeqCst), 1 << 20);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            file.write_at(4096, Bytes::from_static(b"rows")).await.unwrap();
            assert_eq!(&file.read_at(4096, 4).await.unwrap()[..], b"rows");
        });
        drop(file);
        assert_eq!(spilled.load(Ordering::SeqCst), 0, "its room is given back with the file");
    }

    #[test]
    fn no_spill_file_past_the_cap_or_the_disks_room() {
        let spilled = Arc::new(AtomicU64::new(0));
        assert!(SpillFile::reserve(2 << 20, 1 << 20, 0, &spilled).is_none(), "over the cap");
        assert!(
            SpillFile::reserve(1 << 20, u64::MAX, u64::MAX, &spilled).is_none(),
            "the rest of the restore needs the disk"
        );
        assert_eq!(spilled.load(Ordering::SeqCst), 0);
    }
}

//! The unsynced part of one file: writes and size changes the file system has acknowledged
//! but not yet made durable. Reads see the backing file with these applied on top; `fsync`
//! applies them to the backing file and syncs it; a simulated power loss drops them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Pending (unsynced) changes to one file, in the order they were made.
#[derive(Debug, Default, Clone)]
pub struct Pending {
    /// Writes not yet on the backing file: (offset, bytes).
    writes: Vec<(u64, Vec<u8>)>,
    /// The size set by the latest truncate, if any.
    size: Option<u64>,
    /// The smallest size any pending truncate set: backing bytes at or past it are gone.
    cut: Option<u64>,
}

impl Pending {
    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.size.is_none()
    }

    /// Bytes of data pending.
    pub fn bytes(&self) -> u64 {
        self.writes.iter().map(|(_, d)| d.len() as u64).sum()
    }

    /// Records a write.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if !data.is_empty() {
            self.writes.push((offset, data.to_vec()));
        }
    }

    /// Records a truncate (or extension) to `size`.
    pub fn truncate(&mut self, size: u64) {
        for (off, data) in &mut self.writes {
            if *off >= size {
                data.clear();
            } else if *off + data.len() as u64 > size {
                data.truncate((size - *off) as usize);
            }
        }
        self.writes.retain(|(_, d)| !d.is_empty());
        self.size = Some(size);
        self.cut = Some(self.cut.map_or(size, |c| c.min(size)));
    }

    /// The size the file appears to have, given the backing file's size.
    pub fn size(&self, backing_len: u64) -> u64 {
        let base = self.size.unwrap_or(backing_len);
        self.writes
            .iter()
            .map(|(off, d)| off + d.len() as u64)
            .fold(base, u64::max)
    }

    /// Reads `len` bytes at `offset` as the file appears: backing data, then pending changes.
    pub fn read(&self, backing: &File, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let backing_len = backing.metadata()?.len();
        let size = self.size(backing_len);
        if offset >= size {
            return Ok(Vec::new());
        }
        let n = (u64::from(len)).min(size - offset) as usize;
        let mut buf = vec![0u8; n];
        let visible = self.cut.map_or(backing_len, |c| c.min(backing_len));
        if offset < visible {
            let m = ((visible - offset) as usize).min(n);
            read_full(backing, &mut buf[..m], offset)?;
        }
        let end = offset + n as u64;
        for (off, data) in &self.writes {
            let wend = off + data.len() as u64;
            if wend <= offset || *off >= end {
                continue;
            }
            let from = offset.max(*off);
            let to = end.min(wend);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&data[(from - off) as usize..(to - off) as usize]);
        }
        Ok(buf)
    }

    /// Makes the pending changes durable on `backing` (applies them, syncs) and forgets them.
    pub fn apply(&mut self, backing: &File, data_only: bool) -> io::Result<()> {
        if !self.is_empty() {
            let size = self.size(backing.metadata()?.len());
            if let Some(cut) = self.cut {
                backing.set_len(cut)?;
            }
            for (off, data) in &self.writes {
                backing.write_all_at(data, *off)?;
            }
            backing.set_len(size)?;
            *self = Pending::default();
        }
        if data_only {
            backing.sync_data()
        } else {
            backing.sync_all()
        }
    }
}

fn read_full(f: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.read_at(buf, offset)? {
            0 => break,
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn backing(content: &[u8]) -> (tempfile_dir::Dir, File) {
        let dir = tempfile_dir::Dir::new();
        let path = dir.0.join("f");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(content))
            .expect("write backing");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open backing");
        (dir, f)
    }

    /// A scratch directory removed on drop (std only).
    mod tempfile_dir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!(
                    "lazyfs-overlay-{}-{}",
                    std::process::id(),
                    rand::random::<u64>()
                ));
                std::fs::create_dir_all(&p).expect("mkdir");
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn reads_see_pending_writes_over_backing() {
        let (_d, f) = backing(b"hello world");
        let mut p = Pending::default();
        p.write(6, b"there, friend");
        assert_eq!(p.size(11), 19);
        assert_eq!(p.read(&f, 0, 100).unwrap(), b"hello there, friend");
        assert_eq!(p.read(&f, 4, 4).unwrap(), b"o th");
        assert_eq!(p.read(&f, 19, 4).unwrap(), b"");
    }

    #[test]
    fn truncate_hides_backing_bytes_and_cuts_writes() {
        let (_d, f) = backing(b"0123456789");
        let mut p = Pending::default();
        p.write(8, b"abcdef");
        p.truncate(4);
        p.truncate(6);
        assert_eq!(p.read(&f, 0, 100).unwrap(), b"0123\0\0");
        p.write(5, b"Z");
        assert_eq!(p.read(&f, 0, 100).unwrap(), b"0123\0Z");
    }

    #[test]
    fn apply_makes_it_durable_and_drop_loses_it() {
        let (d, f) = backing(b"0123456789");
        let mut p = Pending::default();
        p.truncate(2);
        p.write(2, b"xy");
        p.apply(&f, false).unwrap();
        assert!(p.is_empty());
        assert_eq!(std::fs::read(d.0.join("f")).unwrap(), b"01xy");
        let mut lost = Pending::default();
        lost.write(0, b"gone");
        drop(lost);
        assert_eq!(std::fs::read(d.0.join("f")).unwrap(), b"01xy");
    }

    #[test]
    fn later_writes_win() {
        let (_d, f) = backing(b"");
        let mut p = Pending::default();
        p.write(0, b"aaaa");
        p.write(1, b"bb");
        p.write(10, b"c");
        assert_eq!(p.read(&f, 0, 11).unwrap(), b"abba\0\0\0\0\0\0c");
    }
}

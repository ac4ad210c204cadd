//! Where commands write: standard output for results, standard error for failures, as
//! Consul's `cli.Ui` does. Tests substitute buffers.

use std::io::Write;

/// Output and error streams of one command.
pub struct Ui<'a> {
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

impl<'a> Ui<'a> {
    /// A UI over two writers.
    pub fn new(out: &'a mut dyn Write, err: &'a mut dyn Write) -> Self {
        Ui { out, err }
    }

    /// Writes a line to standard output. Write failures (a closed pipe) are ignored.
    pub fn output(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }

    /// Writes raw bytes and a newline to standard output (KV values need not be UTF-8).
    pub fn output_bytes(&mut self, bytes: &[u8]) {
        let _ = self.out.write_all(bytes);
        let _ = self.out.write_all(b"\n");
    }

    /// Writes raw bytes to standard output and flushes them (streams); false once the
    /// output is closed.
    pub fn stream(&mut self, bytes: &[u8]) -> bool {
        self.out
            .write_all(bytes)
            .and_then(|()| self.out.flush())
            .is_ok()
    }

    /// Writes a line to standard error.
    pub fn error(&mut self, text: &str) {
        let _ = writeln!(self.err, "{text}");
    }

    /// Writes an error line and returns exit code 1.
    pub fn fail(&mut self, text: &str) -> i32 {
        self.error(text);
        1
    }
}

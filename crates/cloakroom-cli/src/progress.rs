//! Progress bars on stderr, and log lines that do not break them.
//!
//! A bar is redrawn in place (carriage return, clear line); a log line written to stderr
//! meanwhile lands in the middle of the bar's line and the next redraw leaves it mangled
//! (issue 17: a library's log line broke `copy`'s bar). So every bar belongs to one
//! [`MultiProgress`], and the log writer ([`LogWriter`]) lifts the bars while it writes a line.

use std::io::{self, Write};
use std::sync::LazyLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;

/// Every progress bar of the process, drawn on stderr (only on a terminal).
static BARS: LazyLock<MultiProgress> = LazyLock::new(MultiProgress::new);

/// A progress bar counting `total` items of `what`, drawn among [`BARS`].
pub fn bar(total: u64, what: &'static str) -> ProgressBar {
    let bar = BARS.add(ProgressBar::new(total));
    let style = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The log subscriber's writer: stderr, with the progress bars lifted around each line.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine
    }
}

/// One log event's output (the formatter writes an event in one `write_all`).
#[derive(Debug)]
pub struct LogLine;

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        BARS.suspend(|| io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

//! What the operator sees: progress bars on long work (rows, rows/s, ETA), step lines when the
//! output is not a terminal, and summary tables.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use migrator::Progress;

/// One bar per table on stderr; plain lines instead when stderr is not a terminal.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    terminal: bool,
    quiet: bool,
}

impl Bars {
    /// `quiet` (e.g. with `--json`) shows nothing.
    pub fn new(quiet: bool) -> Self {
        let terminal = std::io::stderr().is_terminal() && !quiet;
        let target = if terminal {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            terminal,
            quiet,
        }
    }

    fn bar(&self, table: &str) -> ProgressBar {
        let mut bars = self.bars.lock().expect("bars lock");
        bars.entry(table.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>22} [{bar:28.cyan/blue}] {human_pos:>10}/{human_len:<10} {per_sec:>12} eta {eta:>4} {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_prefix(table.to_string());
                bar.enable_steady_tick(Duration::from_millis(250));
                bar
            })
            .clone()
    }

    /// Leaves the bars as they are (the summary table follows).
    pub fn finish(&self) {
        for bar in self.bars.lock().expect("bars lock").values() {
            bar.disable_steady_tick();
            bar.tick();
        }
    }
}

impl Progress for Bars {
    fn table_started(&self, table: &str, total: u64, done: u64) {
        if self.quiet {
            return;
        }
        let bar = self.bar(table);
        bar.set_length(total.max(done));
        bar.set_position(done);
        bar.reset_eta();
    }

    fn rows(&self, table: &str, rows: u64) {
        if self.quiet {
            return;
        }
        let bar = self.bar(table);
        if bar.position() + rows > bar.length().unwrap_or(0) {
            bar.set_length(bar.position() + rows);
        }
        bar.inc(rows);
    }

    fn note(&self, message: &str) {
        if !self.quiet {
            let _ = self.multi.println(format!("note: {message}"));
            if !self.terminal {
                eprintln!("note: {message}");
            }
        }
    }

    fn table_step(&self, table: &str, step: &str) {
        if self.quiet {
            return;
        }
        if self.terminal {
            self.bar(table).set_message(step.to_string());
        } else {
            eprintln!("{table}: {step}");
        }
    }
}

/// Prints rows under headers with aligned columns; numbers align right.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let numeric = !c.is_empty()
                    && c.chars()
                        .all(|ch| ch.is_ascii_digit() || ch == '.' || ch == ',');
                if numeric {
                    format!("{c:>w$}", w = widths[i])
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("  {}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    println!(
        "  {}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for row in rows {
        line(row.clone());
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

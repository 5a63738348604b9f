//! Transfer progress: bars per blob and in total (with rates) when stderr is a terminal, one
//! line per finished blob otherwise, nothing with --quiet or --format json.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use wharf_client::{Progress, SharedProgress, Transfer};
use wharf_oci::Descriptor;

use super::{ClientArgs, Format, TransferArgs};

pub fn for_args(args: &ClientArgs, transfer: &TransferArgs) -> SharedProgress {
    if transfer.quiet || args.format == Format::Json {
        Arc::new(wharf_client::NoProgress)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::new())
    } else {
        Arc::new(Lines)
    }
}

fn short(d: &Descriptor) -> String {
    let title = d
        .annotations
        .as_ref()
        .and_then(|a| a.get("org.opencontainers.image.title"));
    let hex = &d.digest.hex()[..12.min(d.digest.hex().len())];
    match title {
        Some(t) => format!("{t} ({hex})"),
        None => hex.to_string(),
    }
}

fn verb(t: Transfer) -> &'static str {
    match t {
        Transfer::Exists => "Exists   ",
        Transfer::Mounted => "Mounted  ",
        Transfer::Uploaded => "Uploaded ",
        Transfer::Downloaded => "Pulled   ",
    }
}

/// One line per blob on a non-terminal stderr (CI logs).
struct Lines;

impl Progress for Lines {
    fn finish(&self, d: &Descriptor, t: Transfer) {
        eprintln!("{}{} {}", verb(t), short(d), indicatif::HumanBytes(d.size));
    }
}

struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(0));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:>9} {bytes}/{total_bytes} {binary_bytes_per_sec} [{elapsed}]",
            )
            .expect("template"),
        );
        total.set_prefix("Total");
        Bars {
            multi,
            total,
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for Bars {
    fn start(&self, d: &Descriptor) {
        let bar = self
            .multi
            .insert_before(&self.total, ProgressBar::new(d.size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>9} {msg:30!} [{bar:25}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        bar.set_prefix("");
        bar.set_message(short(d));
        self.total.inc_length(d.size);
        self.bars
            .lock()
            .expect("lock")
            .insert(d.digest.to_string(), bar);
    }

    fn advance(&self, d: &Descriptor, n: u64) {
        if let Some(b) = self.bars.lock().expect("lock").get(&d.digest.to_string()) {
            b.inc(n);
        }
        self.total.inc(n);
    }

    fn rewind(&self, d: &Descriptor, at: u64) {
        if let Some(b) = self.bars.lock().expect("lock").get(&d.digest.to_string()) {
            let back = b.position().saturating_sub(at);
            b.set_position(at);
            self.total
                .set_position(self.total.position().saturating_sub(back));
        }
    }

    fn finish(&self, d: &Descriptor, t: Transfer) {
        let bar = self
            .bars
            .lock()
            .expect("lock")
            .remove(&d.digest.to_string());
        match bar {
            Some(b) => {
                b.set_prefix(verb(t).trim().to_string());
                b.finish();
            }
            None => {
                let _ = self.multi.println(format!(
                    "{}{} {}",
                    verb(t),
                    short(d),
                    indicatif::HumanBytes(d.size)
                ));
            }
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.total.finish();
    }
}

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

/// A name for every blob: its title, else what it is (config, layer, blob) and a short digest.
fn short(d: &Descriptor) -> String {
    let title = d
        .annotations
        .as_ref()
        .and_then(|a| a.get("org.opencontainers.image.title"));
    let hex = &d.digest.hex()[..12.min(d.digest.hex().len())];
    let mt = d.media_type.as_str();
    match title {
        Some(t) => t.clone(),
        None if mt == wharf_oci::media_type::OCI_EMPTY => "config (empty)".into(),
        None if mt.contains("config") => format!("config {hex}"),
        None if mt.contains("layer") || mt.contains("rootfs") || mt.contains("content") => {
            format!("layer {hex}")
        }
        None => format!("blob {hex}"),
    }
}

/// The per-blob bar for a terminal `width` columns wide: the name shrinks first, then the
/// rate and byte counts give way to a percentage, so a line never wraps.
fn bar_template(width: usize) -> String {
    if width >= 80 {
        let name = (width - 58).min(30);
        format!("{{prefix:>9}} {{msg:{name}!}} [{{wide_bar}}] {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}}")
    } else {
        let name = width.saturating_sub(28).clamp(4, 30);
        format!("{{prefix:>9}} {{msg:{name}!}} [{{wide_bar}}] {{percent:>3}}%")
    }
}

fn terminal_width() -> usize {
    console::Term::stderr().size().1 as usize
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
        eprintln!(
            "{}{} ({}) {}",
            verb(t),
            short(d),
            d.digest,
            indicatif::HumanBytes(d.size)
        );
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
            ProgressStyle::with_template(if terminal_width() >= 60 {
                "{prefix:>9} {bytes}/{total_bytes} {binary_bytes_per_sec} [{elapsed}]"
            } else {
                "{prefix:>9} {bytes}/{total_bytes}"
            })
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
            ProgressStyle::with_template(&bar_template(terminal_width()))
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
                let line = format!("{}{} {}", verb(t), short(d), indicatif::HumanBytes(d.size));
                let _ = self
                    .multi
                    .println(console::truncate_str(&line, terminal_width(), ""));
            }
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.total.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let d = |mt: &str| {
            wharf_client::manifests::descriptor(mt.into(), wharf_oci::Digest::sha256_of(b"x"), 1)
        };
        assert_eq!(
            short(&d(wharf_oci::media_type::OCI_EMPTY)),
            "config (empty)"
        );
        assert!(
            short(&d("application/vnd.oci.image.config.v1+json")).starts_with("config 2d711642")
        );
        assert!(short(&d("application/vnd.oci.image.layer.v1.tar+gzip")).starts_with("layer "));
        assert!(short(&d("application/octet-stream")).starts_with("blob "));
    }

    #[test]
    fn templates_fit() {
        // fixed parts at their widest: prefix 9, bytes "1023.99 MiB/1023.99 MiB", rate
        // "1023.99 MiB/s", brackets, spaces; the wide bar takes what is left (>= 0)
        for w in [40usize, 60, 79, 80, 120, 200] {
            let t = bar_template(w);
            let name: usize = t
                .split("{msg:")
                .nth(1)
                .unwrap()
                .split('!')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let fixed = if w >= 80 {
                9 + 1 + name + 2 + 2 + 23 + 1 + 13
            } else {
                9 + 1 + name + 2 + 2 + 5
            };
            assert!(fixed <= w.max(40), "{w}: {t}");
        }
    }
}

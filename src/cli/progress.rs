//! Progress bars on a TTY (stderr), nothing otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use graft::oci::{Descriptor, Digest};
use graft::progress::{BlobOutcome, NoProgress, Reporter};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bars per blob transfer, drawn on stderr.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    /// A reporter: bars when stderr is a terminal and not `quiet`, else silent.
    pub fn reporter(quiet: bool) -> Arc<dyn Reporter> {
        if quiet || !std::io::stderr().is_terminal() {
            return Arc::new(NoProgress);
        }
        Arc::new(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        })
    }
}

fn short(d: &Digest) -> String {
    format!("{}:{}", d.algorithm().as_str(), &d.hex()[..12])
}

impl Reporter for Bars {
    fn transfer_started(&self, desc: &Descriptor) {
        let bar = self.multi.add(ProgressBar::new(desc.size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(short(&desc.digest));
        if let Some(old) = self
            .bars
            .lock()
            .expect("bars")
            .insert(desc.digest.clone(), bar)
        {
            old.finish_and_clear();
        }
    }

    fn transfer_progress(&self, desc: &Descriptor, bytes: u64) {
        if let Some(b) = self.bars.lock().expect("bars").get(&desc.digest) {
            b.inc(bytes);
        }
    }

    fn blob_done(&self, desc: &Descriptor, outcome: BlobOutcome) {
        if let Some(b) = self.bars.lock().expect("bars").remove(&desc.digest) {
            b.finish_and_clear();
        }
        if outcome != BlobOutcome::Uploaded {
            return;
        }
        let _ = self
            .multi
            .println(format!("{} {}", short(&desc.digest), "copied"));
    }
}

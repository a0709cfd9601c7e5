//! A dataset far bigger than the memory it may take: a 400 MB JSONL of prompt/completion records
//! is indexed and read at random positions while the process's peak resident memory (VmHWM)
//! grows by far less than the file. The index keeps 16 bytes per record and no text.
//!
//! One test in this binary, so that no other test's allocations count in the peak.

mod common;

use std::io::{BufWriter, Write};

use ardpipe_data::{DatasetSpec, Format, RecordStore, Turns};
use common::TempDir;

const RECORDS: usize = 400_000;
/// Each prompt is padded to about this many bytes, so the file is ~RECORDS kB.
const PAD: usize = 950;
/// The peak may grow by this much, index included (the index itself is 6.4 MB).
const BOUND_MB: u64 = 32;

/// A field of /proc/self/status, in kB.
fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("/proc/self/status has no {field}"))
}

fn prompt(i: usize) -> String {
    let head = format!("Question {i}: ");
    let filler: String = "lorem ipsum dolor sit amet "
        .chars()
        .cycle()
        .take(PAD - head.len())
        .collect();
    head + &filler
}

#[test]
fn scanning_and_random_reads_of_a_400_mb_jsonl_keep_memory_flat() {
    let d = TempDir::new("streaming");
    let path = d.path().join("big.jsonl");
    {
        let mut w = BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..RECORDS {
            // Escapes and non-ASCII text on the way, so the parse is the real one.
            writeln!(
                w,
                "{{\"prompt\": \"{}\", \"completion\": \"Answer \\\"{i}\\\" — ok\"}}",
                prompt(i)
            )
            .unwrap();
        }
        w.flush().unwrap();
    }
    let size_mb = std::fs::metadata(&path).unwrap().len() / 1_000_000;
    assert!(size_mb >= 390, "the file is {size_mb} MB");

    let mut spec = DatasetSpec::new(["big.jsonl"], Format::Jsonl);
    spec.fields.prompt = Some("prompt".into());
    spec.fields.completion = Some("completion".into());

    let rss_before = status_kb("VmRSS:");
    let hwm_before = status_kb("VmHWM:");
    let t = std::time::Instant::now();
    let (store, report) = RecordStore::scan(&spec, d.path()).unwrap();
    let scan_s = t.elapsed().as_secs_f64();
    assert_eq!(store.len(), RECORDS);
    assert_eq!(report.skipped, 0);

    // Random positions (a fixed LCG), each checked against what was written.
    let t = std::time::Instant::now();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20_000 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let i = (x >> 33) as usize % RECORDS;
        let rec = store.get(i).unwrap();
        assert_eq!(rec.origin.line, i as u64 + 1);
        assert_eq!(
            rec.turns,
            Some(Turns::PromptCompletion {
                prompt: prompt(i),
                completion: format!("Answer \"{i}\" — ok"),
            })
        );
    }
    let get_s = t.elapsed().as_secs_f64();
    assert_eq!(store.get(RECORDS - 1).unwrap().origin.line, RECORDS as u64);

    let hwm_after = status_kb("VmHWM:");
    let rss_after = status_kb("VmRSS:");
    let growth_mb = hwm_after.saturating_sub(hwm_before.max(rss_before)) / 1024;
    eprintln!(
        "{size_mb} MB, {RECORDS} records: scan {scan_s:.1} s, 20000 random gets {get_s:.2} s; \
         VmRSS {} -> {} MB, VmHWM {} -> {} MB (peak growth {growth_mb} MB, bound {BOUND_MB} MB)",
        rss_before / 1024,
        rss_after / 1024,
        hwm_before / 1024,
        hwm_after / 1024
    );
    assert!(
        growth_mb < BOUND_MB,
        "peak memory grew by {growth_mb} MB reading a {size_mb} MB file (bound {BOUND_MB} MB)"
    );
}

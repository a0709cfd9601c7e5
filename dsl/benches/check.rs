//! Times `check` on a generated ~2,000-line pipeline and prints the median (not a timed test:
//! `cargo bench -p ardpipe-dsl --bench check`).

use std::path::Path;
use std::time::Instant;

fn pipeline(lines: usize) -> String {
    let mut s = String::from(
        "pipeline {\n    name = \"bench\"\n    seed = 1\n}\n\nlet rank = 8\n\n\
         dataset d {\n    format = jsonl\n    path = \"d.jsonl\"\n    label = \"y\"\n\n    split {\n        validation = 10%\n    }\n}\n\n\
         model {\n    path = \"m\"\n    head = sequence_classification\n}\n\n\
         train {\n    lr = warmup(cosine(from = 1e-3, to = 0), over = 10%)\n    steps = 1000\n    eval_every = 100 steps\n}\n\n\
         evaluate {\n    metrics = [loss, accuracy, macro_f1]\n}\n",
    );
    let mut i = 0;
    while s.lines().count() < lines {
        s.push_str(&format!(
            "\n# adapter {i}\nadapter a{i} {{\n    method = ard_lora\n    modules = [query, value, \"encoder.layer.*.output.dense\"]\n    \
             layers = [0..3, 5]\n    r0 = rank\n    scale = 16\n\n    alpha {{\n        init = 1\n        min = 0\n        max = 2\n    }}\n\n    \
             regularize {{\n        lambda = piecewise(at = [0%, 20%, 100%], values = [0, 1e-3, 1e-3])\n        gamma = linear(from = 0, to = 0.5, end = 30%)\n    }}\n}}\n"
        ));
        i += 1;
    }
    s
}

fn main() {
    let text = pipeline(2000);
    let ctx = ardpipe_dsl::Context {
        assets: Some("/assets".into()),
        ..Default::default()
    };
    let path = Path::new("/bench/pipeline.ard");
    let check = || {
        let t = Instant::now();
        let r = ardpipe_dsl::check_source(path, &text, &ctx);
        assert!(r.is_ok(), "the generated pipeline checks");
        t.elapsed().as_secs_f64() * 1e3
    };
    for _ in 0..3 {
        check();
    }
    let mut times: Vec<f64> = (0..31).map(|_| check()).collect();
    times.sort_by(|a, b| a.total_cmp(b));
    let fmt_t = Instant::now();
    let _ = ardpipe_dsl::format_source("bench.ard", &text);
    println!(
        "check on a {}-line pipeline: median {:.2} ms (min {:.2}, max {:.2}, 31 runs); fmt {:.2} ms",
        text.lines().count(),
        times[15],
        times[0],
        times[30],
        fmt_t.elapsed().as_secs_f64() * 1e3
    );
}

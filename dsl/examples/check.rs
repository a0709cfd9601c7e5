//! `cargo run -p ardpipe-dsl --example check -- FILE [KEY=VALUE...]`: check a file and print the
//! diagnostics or the resolved pipeline as JSON (a development aid; users run `ardpipe check`).

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        eprintln!("usage: check FILE [KEY=VALUE...]");
        std::process::exit(2);
    };
    let ctx = ardpipe_dsl::Context {
        assets: Some("/root/.cache/ardpipe/assets".into()),
        overrides: args.collect(),
        ..Default::default()
    };
    match ardpipe_dsl::check_file(std::path::Path::new(&file), &ctx) {
        Ok(c) => println!(
            "{}",
            serde_json::to_string_pretty(&c.pipeline).unwrap_or_default()
        ),
        Err(d) => {
            for r in d.reports() {
                let mut out = String::new();
                let h = miette::GraphicalReportHandler::new_themed(
                    miette::GraphicalTheme::unicode_nocolor(),
                )
                .with_width(100);
                let _ = h.render_report(&mut out, r);
                eprintln!("{out}");
            }
            std::process::exit(1);
        }
    }
}

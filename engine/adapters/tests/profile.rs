//! The operator profiler (csrc/profile.cpp) records the aten operators run while it is on, in the
//! Chrome trace format scripts/bench_models.py reads for both sides.

use ardpipe_adapters::profile::Profile;
use tch::{Device, Kind, Tensor};

#[test]
fn a_profile_records_the_operators_run_while_it_is_on() {
    let a = Tensor::randn([64, 64], (Kind::Float, Device::Cpu));
    let before = a.matmul(&a);
    let p = Profile::start().unwrap();
    // A second profiler cannot start while one records.
    assert!(Profile::start().is_err());
    let y = a.matmul(&a).relu();
    let dir = std::env::temp_dir().join(format!("ardpipe-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("trace.json");
    p.finish(&trace).unwrap();
    let after = a.matmul(&a);
    assert_eq!(y.size(), [64, 64]);

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let names: Vec<&str> = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "cpu_op")
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(names.contains(&"aten::mm"), "{names:?}");
    assert!(names.contains(&"aten::relu"), "{names:?}");
    // Only what ran while it was on: one product, not three.
    assert_eq!(
        names.iter().filter(|n| **n == "aten::mm").count(),
        1,
        "{names:?}"
    );
    drop((before, after));

    // Dropped without finishing: stopped, nothing written, and a new one can start.
    drop(Profile::start().unwrap());
    Profile::start()
        .unwrap()
        .finish(&dir.join("again.json"))
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

//! Prints the process RSS before and after building the guard's content wrapper (what the
//! gateway's start-up costs in memory, BENCHMARKS.md).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

fn rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("")
        .to_owned()
}

fn main() {
    println!("start: {}", rss());
    let _w = comis_guard::wrap::ContentWrapper::new().unwrap();
    println!("after ContentWrapper::new: {}", rss());
}

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]
mod common;
use common::*;
#[test]
fn scratch() {
    println!("{}", serde_json::to_string_pretty(probe()).unwrap());
    let h = Home::new();
    let s = h.sandbox();
    println!("{:?} {:?}", s.state(), s.warnings());
    for c in ["cat /proc/kcore /proc/kallsyms | head -c 100; ls /proc/acpi; echo x > /proc/acpi/y; echo done"] {
        let o = h.run(c);
        println!("== {c}\n{:?}\n{}\n--stderr--\n{}", o.report, text(&o.stdout), text(&o.stderr));
    }
}

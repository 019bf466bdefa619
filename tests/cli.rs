//! The demo binary's command line: `--help` on stdout with every flag and its
//! default, exit 0; an unknown flag on stderr, exit 2.

use std::process::Command;

#[test]
fn help_lists_every_flag_with_its_default_on_stdout() {
    let out = Command::new(env!("CARGO_BIN_EXE_pushloop"))
        .arg("--help")
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "exit status {:?}", out.status);
    let help = String::from_utf8(out.stdout).expect("UTF-8");
    for flag in [
        "--addr",
        "--no-tick",
        "--tick-ms",
        "--max-connections",
        "--max-message-bytes",
        "--trace",
        "--shutdown-ms",
        "--quiet",
        "--threads",
        "--no-lab",
    ] {
        let line = help
            .lines()
            .find(|line| line.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing from --help:\n{help}"));
        assert!(line.contains("(default: "), "{flag} has no default: {line}");
    }
    assert!(out.stderr.is_empty(), "nothing on stderr");
}

#[test]
fn an_unknown_flag_is_refused_on_stderr_with_status_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_pushloop"))
        .arg("--frobnicate")
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frobnicate"));
    assert!(out.stdout.is_empty());
}

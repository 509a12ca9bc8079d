//! Extracts the README's "Using klog" example (the first ```rust block under "## Using klog")
//! into `$OUT_DIR/readme_using_klog.rs`, which the `readme-using-klog` binary includes verbatim,
//! so that a test runs exactly what the README shows.

use std::path::PathBuf;

fn main() {
    let readme = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("../README.md");
    println!("cargo:rerun-if-changed={}", readme.display());
    let text = std::fs::read_to_string(&readme).expect("README.md is readable");
    let section = text
        .split("\n## Using klog\n")
        .nth(1)
        .expect("README.md has a \"## Using klog\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let code = section
        .split("```rust\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a ```rust block under \"## Using klog\"");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out.join("readme_using_klog.rs"), code).expect("OUT_DIR is writable");
}

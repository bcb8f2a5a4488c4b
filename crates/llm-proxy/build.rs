//! Lays out the functions the proxy runs together, ahead of the rest of its code
//! (`link-order.ld` and `link-order.txt`, written by scripts/link-order): the kernel maps code
//! around each page touched, so an idle proxy kept ~9 MiB of its ~17 MB of code resident with
//! the compiler's order and keeps under 5 with this one.
//!
//! Release builds only, and only where the linker is known to be LLD, which reads the script's
//! `INSERT` and `--symbol-ordering-file`: Rust 1.90 and later link x86_64-unknown-linux-gnu with
//! their bundled LLD unless a linker is configured. With another linker, or
//! `LLM_PROXY_LINK_ORDER=0`, the binary links in the compiler's order (the same program, more
//! code resident).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-changed=link-order.ld");
    println!("cargo:rerun-if-env-changed=LLM_PROXY_LINK_ORDER");
    // Release builds only: matching the script's patterns against a debug build's sections
    // adds ~10 s to every link, for a layout nobody measures there.
    if std::env::var("PROFILE").is_ok_and(|p| p != "release")
        || std::env::var("LLM_PROXY_LINK_ORDER").is_ok_and(|v| v == "0")
        || !linked_by_bundled_lld()
    {
        return;
    }
    let Some(dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return;
    };
    let (script, order) = (
        Path::new(&dir).join("link-order.ld"),
        Path::new(&dir).join("link-order.txt"),
    );
    if !script.exists() || !order.exists() {
        return;
    }
    // The script gathers the sections of the functions that run, named without their hashes,
    // ahead of the rest of the code; the ordering file orders them where its names match this
    // build's exactly (a symbol it names that this build lacks, another profile's or one whose
    // hash changed, is skipped without a warning).
    let arg = |a: String| println!("cargo:rustc-link-arg-bin=llm-proxy={a}");
    arg(format!("-Wl,--script={}", script.display()));
    arg(format!("-Wl,--symbol-ordering-file={}", order.display()));
    arg("-Wl,--no-warn-symbol-ordering".into());
    // Relative relocations packed (RELR): the table the loader reads at start-up shrinks from
    // ~600 KB to a few KB. Needs glibc 2.36 where the binary runs: only when building for the
    // machine building it, and its glibc has it.
    if std::env::var("HOST").is_ok_and(|h| h == "x86_64-unknown-linux-gnu") && host_glibc_has_relr()
    {
        arg("-Wl,-z,pack-relative-relocs".into());
    }
}

/// Whether this machine's glibc (`getconf GNU_LIBC_VERSION`: "glibc 2.36") reads packed
/// relative relocations (2.36 and later).
fn host_glibc_has_relr() -> bool {
    Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .is_ok_and(|out| version(&out.stdout) >= (2, 36))
}

/// Whether this build links with the LLD that rustc bundles: the target's default since Rust
/// 1.90 on x86_64 Linux, when no linker is configured and no rustflag names one (any flag
/// mentioning "link", link arguments included, is taken as a reason to stay out of the way).
fn linked_by_bundled_lld() -> bool {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    if var("TARGET") != "x86_64-unknown-linux-gnu"
        || std::env::var_os("RUSTC_LINKER").is_some()
        || var("CARGO_ENCODED_RUSTFLAGS").contains("link")
    {
        return false;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    Command::new(rustc)
        .arg("--version")
        .output()
        .is_ok_and(|out| version(&out.stdout) >= (1, 90))
}

/// The major and minor version in a tool's "name X.Y[.Z...]" line; zeros where unreadable.
fn version(line: &[u8]) -> (u32, u32) {
    let text = String::from_utf8_lossy(line);
    let mut numbers = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

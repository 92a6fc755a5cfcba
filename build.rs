//! Records the git commit for `apivip version`.
use std::path::Path;
use std::process::Command;

/// `git ARGS` in the package root, trimmed; `None` without git or outside a checkout.
fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=APIVIP_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself, the branch it names and the packed refs,
    // wherever git keeps them (in a worktree `.git` is a file; a path that does not
    // exist would make cargo run this script on every build).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    let mut any = false;
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
                any = true;
            }
        }
    }
    if !any {
        println!("cargo:rerun-if-changed=build.rs");
    }
}

//! Real processes against the "never destroy data" and "no SIGBUS" promises: `klog-demo` on a
//! small tmpfs fails at open with a clear error instead of dying of a bus error, and never
//! removes or overwrites a directory or trace it did not create.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A directory of this test's own, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("klog-safety-{tag}-{}", std::process::id()));
        std::fs::create_dir(&d).expect("fresh test directory");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A tmpfs of `mib` MiB mounted on a directory of its own; unmounted on drop.
struct Tmpfs(Dir);

impl Tmpfs {
    /// `None` (with a message) where mounting is not permitted.
    fn mount(tag: &str, mib: u32) -> Option<Tmpfs> {
        let d = Dir::new(tag);
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&d.0)
            .status();
        match st {
            Ok(s) if s.success() => Some(Tmpfs(d)),
            other => {
                eprintln!("SKIPPED: cannot mount a tmpfs here ({other:?}); run as root");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0 .0).status();
    }
}

fn demo(args: &[&str], live: &Path, out: &Path) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_klog-demo"))
        .args(args)
        .arg("--live")
        .arg(live)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run klog-demo");
    eprintln!(
        "klog-demo {args:?}: {:?}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Every file under `dir` (recursively) with its contents.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            m.extend(contents(&p));
        } else {
            m.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    m
}

#[test]
fn a_channel_larger_than_its_tmpfs_fails_at_open_not_with_sigbus() {
    let Some(fs) = Tmpfs::mount("tmpfs", 8) else {
        return;
    };
    let out = Dir::new("tmpfs-out");
    let live = fs.0 .0.join("live");
    // 16 MiB per CPU buffer on an 8 MiB file system, enough events to fill every page.
    let o = demo(
        &[
            "--threads",
            "2",
            "--events",
            "2000000",
            "--subbuf-size",
            "1048576",
            "--n-subbufs",
            "16",
        ],
        &live,
        &out.0.join("trace"),
    );
    assert_eq!(o.status.signal(), None, "killed by a signal (SIGBUS = 7)");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&live.join("cpu0").display().to_string()),
        "names the file: {err}"
    );
    assert!(err.contains("cannot reserve 16"), "the size needed: {err}");
    assert!(err.contains("bytes free"), "the space free: {err}");
    // The failed open removed what it created (the live directory and its files), nothing else.
    assert!(
        !live.exists(),
        "left behind: {:?}",
        contents(&fs.0 .0).keys()
    );
    assert!(!out.0.join("trace").exists());
}

#[test]
fn the_live_directory_of_the_user_is_kept() {
    let live = Dir::new("live-kept");
    let out = Dir::new("live-kept-out");
    std::fs::write(live.0.join("notes.txt"), b"mine").unwrap();
    let o = demo(
        &["--threads", "1", "--events", "1000"],
        &live.0,
        &out.0.join("t"),
    );
    assert!(o.status.success());
    // The handler's files are gone, the user's directory and file are not.
    let left: Vec<_> = contents(&live.0).into_iter().collect();
    assert_eq!(left, [(live.0.join("notes.txt"), b"mine".to_vec())]);
    assert!(out.0.join("t").join("metadata").is_file());
}

#[test]
fn an_existing_trace_is_refused_and_left_byte_identical() {
    // A crashed run's live trace, and an earlier run's recorded output.
    let live = Dir::new("existing-live");
    std::fs::write(live.0.join("metadata"), b"KLOGMETA crashed run").unwrap();
    std::fs::write(live.0.join("cpu0"), vec![5u8; 8192]).unwrap();
    let out = Dir::new("existing-out");
    let fresh = Dir::new("existing-fresh");
    let o = demo(&["--events", "100"], &live.0, &fresh.0.join("t"));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&live.0.display().to_string()), "{err}");
    assert!(err.contains("already holds a klog trace"), "{err}");
    assert_eq!(std::fs::read(live.0.join("cpu0")).unwrap(), vec![5u8; 8192]);
    assert_eq!(
        std::fs::read(live.0.join("metadata")).unwrap(),
        b"KLOGMETA crashed run"
    );
    assert!(!fresh.0.join("t").exists());

    std::fs::write(out.0.join("metadata"), b"earlier").unwrap();
    std::fs::write(out.0.join("cpu1"), b"earlier run").unwrap();
    let before = contents(&out.0);
    let newlive = fresh.0.join("live");
    let o = demo(&["--events", "100"], &newlive, &out.0);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds a trace"));
    assert_eq!(contents(&out.0), before);
    assert!(!newlive.exists());
}

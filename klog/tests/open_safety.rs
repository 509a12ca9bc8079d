//! `RelayHandler::open` never destroys data: an existing trace (a live handler's, a crashed
//! run's) is refused and left byte-identical, replacing it takes an explicit option, a failed
//! open removes only what it created, and dropping a handler leaves nothing of its own behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use klog::{OpenError, RelayConfig, RelayHandler};

/// A directory of this test's own, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("klog-open-{tag}-{}", std::process::id()));
        std::fs::create_dir(&d).expect("fresh test directory");
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file in `dir` with its contents.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

fn small(dir: &Path) -> RelayConfig {
    RelayConfig {
        subbuf_size: 4096,
        n_subbufs: 4,
        ..RelayConfig::new(dir)
    }
}

#[test]
fn a_live_trace_is_refused_and_left_untouched() {
    let d = Dir::new("live");
    let first = RelayHandler::open(&small(&d.0)).unwrap();
    first.flush();
    let before = contents(&d.0);
    assert!(
        before["metadata"].len() > 8,
        "the first handler wrote its header"
    );

    let err = match RelayHandler::open(&small(&d.0)) {
        Ok(_) => panic!("a second handler opened on a live trace"),
        Err(e) => e,
    };
    assert!(matches!(err, OpenError::TraceExists { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&d.0.display().to_string()),
        "names the directory: {msg}"
    );
    assert!(msg.contains("replace"), "says how to replace it: {msg}");
    assert_eq!(contents(&d.0), before, "the live trace is byte-identical");
    drop(first);
}

#[test]
fn a_crashed_runs_trace_stays_until_replaced_explicitly() {
    let d = Dir::new("crashed");
    // What a killed flight recorder leaves: its files, plus a file of the user's.
    std::fs::write(d.0.join("metadata"), b"KLOGMETA old header").unwrap();
    std::fs::write(d.0.join("cpu0"), vec![7u8; 5000]).unwrap();
    std::fs::write(d.0.join("cpu17"), vec![9u8; 100]).unwrap();
    std::fs::write(d.0.join("notes.txt"), b"mine").unwrap();
    let before = contents(&d.0);

    let Err(err) = RelayHandler::open(&small(&d.0)) else {
        panic!("opened over a crashed run's trace")
    };
    let OpenError::TraceExists { dir, files } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(dir, &d.0);
    assert_eq!(files, &["cpu0", "cpu17", "metadata"]);
    assert_eq!(contents(&d.0), before, "nothing was changed");

    // The explicit option replaces klog's files only.
    let cfg = RelayConfig {
        replace: true,
        ..small(&d.0)
    };
    let h = RelayHandler::open(&cfg).unwrap();
    let now = contents(&d.0);
    assert_eq!(now["notes.txt"], b"mine");
    assert!(!now.contains_key("cpu17"), "the old trace's files are gone");
    assert_ne!(now["metadata"], before["metadata"]);
    drop(h);
    // The new handler's files go with it; the user's file and directory stay.
    assert_eq!(
        contents(&d.0).into_keys().collect::<Vec<_>>(),
        ["notes.txt"]
    );
}

#[test]
fn dropping_a_handler_removes_what_it_created_and_only_that() {
    let d = Dir::new("drop");
    // A directory the handler creates (and its missing parent) goes with the handler ...
    let made = d.0.join("parent").join("trace");
    let h = RelayHandler::open(&small(&made)).unwrap();
    assert!(made.join("metadata").is_file() && made.join("cpu0").is_file());
    drop(h);
    assert!(
        !made.exists(),
        "the directory the handler created is removed"
    );
    // ... one that existed stays, empty.
    let e = Dir::new("drop-existing");
    let h = RelayHandler::open(&small(&e.0)).unwrap();
    drop(h);
    assert!(e.0.is_dir());
    assert!(contents(&e.0).is_empty(), "{:?}", contents(&e.0).keys());
}

#[test]
fn an_empty_directory_path_is_an_error() {
    let Err(err) = RelayHandler::open(&RelayConfig::new("")) else {
        panic!("opened a trace in \"\" (the current directory)")
    };
    assert!(matches!(err, OpenError::NoDir), "{err:?}");
    assert!(!Path::new("metadata").exists());
}

#[test]
fn io_errors_name_their_path() {
    let d = Dir::new("io");
    let file = d.0.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let under = file.join("trace");
    let Err(err) = RelayHandler::open(&small(&under)) else {
        panic!("opened a trace under a regular file")
    };
    let msg = err.to_string();
    assert!(msg.contains(&under.display().to_string()), "{msg}");
}

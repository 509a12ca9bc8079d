//! `klog!` / `klog_raw!` expansion (klog-macros): the callsite metadata a statement defines
//! (normalised format string, argument count, level, kind, location) and the arguments it
//! passes, in which order and how often they are evaluated. Compile errors: `compile_fail.rs`.

use std::cell::Cell;
use std::sync::{Arc, Mutex, MutexGuard};

use klog::arg::{DynArgs, Writer};
use klog::{klog, klog_debug, klog_error, klog_raw, klog_trace, klog_warn, Callsite, Level, Meta};

/// Runs a statement and returns its line as the callsite records it (`line!()` in a macro is
/// the line where the outermost macro call starts, for `klog!` inside as for `line_of!`).
macro_rules! line_of {
    ($e:expr) => {{
        $e;
        line!()
    }};
}

/// Callsites register on first execution and the handler is global: the tests run one at a
/// time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The callsite defined on `line` of this file (it must have run once).
fn site(line: u32) -> &'static Meta {
    let mut found: Option<&'static Callsite> = None;
    klog::for_each_callsite(|cs| {
        if cs.meta().file == file!() && cs.meta().line == line {
            assert!(found.is_none(), "two callsites on line {line}");
            found = Some(cs);
        }
    });
    found
        .unwrap_or_else(|| panic!("no callsite registered for line {line}"))
        .meta()
}

/// Runs `f` (which must execute one statement) and returns its callsite's metadata.
fn meta_of(f: impl FnOnce() -> u32) -> &'static Meta {
    let _g = serial();
    let line = f();
    site(line)
}

#[derive(Debug, Clone, PartialEq)]
struct Event {
    fmt: &'static str,
    line: u32,
    types: Vec<u8>,
    payload: Vec<u8>,
}

#[derive(Default)]
struct Capture {
    events: Mutex<Vec<Event>>,
    raws: Mutex<Vec<(u32, Vec<u8>)>>,
}

impl klog::Handler for Capture {
    fn slots(&self) -> usize {
        1
    }
    unsafe fn event(&self, _slot: usize, cs: &'static Callsite, args: &dyn DynArgs) {
        let mut types = vec![0u8; args.count()];
        args.types(&mut types);
        let mut payload = vec![0u8; args.encoded_len()];
        let mut w = Writer::new(&mut payload);
        args.encode(&mut w);
        assert_eq!(w.pos(), payload.len());
        assert_eq!(args.count(), usize::from(cs.meta().n_args));
        self.events.lock().unwrap().push(Event {
            fmt: cs.meta().fmt,
            line: cs.meta().line,
            types,
            payload,
        });
    }
    unsafe fn raw(&self, _slot: usize, cs: &'static Callsite, bytes: &[u8]) {
        self.raws
            .lock()
            .unwrap()
            .push((cs.meta().line, bytes.to_vec()));
    }
    fn lost(&self, _slot: usize) {
        panic!("lost event");
    }
    unsafe fn flush(&self, _slot: usize) {}
}

/// Runs `f` with a capturing handler registered.
fn capture(f: impl FnOnce()) -> Arc<Capture> {
    let _g = serial();
    let cap = Arc::new(Capture::default());
    klog::register(cap.clone()).expect("register");
    f();
    klog::unregister().expect("unregister");
    cap
}

fn events(cap: &Capture) -> Vec<Event> {
    cap.events.lock().unwrap().clone()
}

// Wire type tags (docs/FORMAT.md).
const U8: u8 = 0;
const UINT: u8 = 1;
/// `i32` has its own tag (signed widths are distinct on the wire).
const I32: u8 = 12;
const BOOL: u8 = 6;
const STR: u8 = 8;

#[test]
fn brief_example_is_normalised() {
    let q = 3u8;
    let x = 0x2au32;
    let m = meta_of(|| line_of!(klog!("rx {} after {x:#x} {0}", q)));
    assert_eq!(m.fmt, "rx {0} after {1:#x} {0}");
    assert_eq!(m.n_args, 2);
    assert_eq!(m.level, Level::Info);
    assert_eq!(m.kind, klog::__private::Kind::Fmt);
    assert_eq!(m.module, module_path!());
    assert_eq!(m.file, file!());
}

#[test]
fn implicit_explicit_named_and_captured_arguments() {
    let (a, b, c, d) = (1u8, 2u8, 3u8, 4u8);
    // The implicit counter ignores explicit indices, as in format_args!.
    let m = meta_of(|| line_of!(klog!("{} {0} {} {1}", a, b)));
    assert_eq!(m.fmt, "{0} {0} {1} {1}");
    assert_eq!(m.n_args, 2);
    // Positional, then named in order, then captures in order of first use.
    let m = meta_of(|| line_of!(klog!("{d} {n2} {} {c} {n1} {d} {0}", a, n1 = b, n2 = c)));
    assert_eq!(m.fmt, "{3} {2} {0} {4} {1} {3} {0}");
    assert_eq!(m.n_args, 5);
    // A named argument may also be referenced by position (format_args! allows it).
    let m = meta_of(|| line_of!(klog!("{0} {1} {x}", a, x = b)));
    assert_eq!(m.fmt, "{0} {1} {1}");
    assert_eq!(m.n_args, 2);
}

#[test]
fn specs_are_rewritten_canonically() {
    let (v, f) = (5i32, 1.5f64);
    let m = meta_of(|| {
        line_of!(klog!(
            "{: >5}|{0 :x }|{0 :<+#08.3}|{1:.}|{1:*^9?}|{0:}>4}|{0:00}|{1:e} {1:E}",
            v,
            f
        ))
    });
    assert_eq!(
        m.fmt,
        "{0:>5}|{0:x}|{0:<+#08.3}|{1}|{1:*^9?}|{0:}>4}|{0:00}|{1:e} {1:E}"
    );
    assert_eq!(m.n_args, 2);
}

#[test]
fn escapes_are_kept_and_string_escapes_resolved() {
    let v = 1u8;
    let m = meta_of(|| line_of!(klog!("{{literal}} {{{}}} }}{{", v)));
    assert_eq!(m.fmt, "{{literal}} {{{0}}} }}{{");
    let m = meta_of(|| {
        line_of!(klog!(
            "tab\t\u{e9}\x41\\ \"q\" \
               {}",
            v
        ))
    });
    assert_eq!(m.fmt, "tab\té\x41\\ \"q\" {0}");
    let m = meta_of(|| line_of!(klog!(r#"raw "{}" \n"#, v)));
    assert_eq!(m.fmt, r#"raw "{0}" \n"#);
}

#[test]
fn no_arguments() {
    let m = meta_of(|| line_of!(klog!("plain text")));
    assert_eq!(m.fmt, "plain text");
    assert_eq!(m.n_args, 0);
    let m = meta_of(|| line_of!(klog!("")));
    assert_eq!(m.fmt, "");
    assert_eq!(m.n_args, 0);
}

#[test]
fn levels_kinds_and_location() {
    let m = meta_of(|| line_of!(klog!(Level::Warn, "w")));
    assert_eq!(m.level, Level::Warn);
    let m = meta_of(|| line_of!(klog_error!("e {}", 1u8)));
    assert_eq!((m.level, m.fmt, m.n_args), (Level::Error, "e {0}", 1));
    let m = meta_of(|| line_of!(klog_warn!("w")));
    assert_eq!(m.level, Level::Warn);
    let m = meta_of(|| line_of!(klog_debug!("d")));
    assert_eq!(m.level, Level::Debug);
    let m = meta_of(|| line_of!(klog_trace!("t",)));
    assert_eq!(m.level, Level::Trace);
    let bytes = [1u8, 2, 3];
    let m = meta_of(|| line_of!(klog_raw!(bytes)));
    assert_eq!(m.kind, klog::__private::Kind::Raw);
    assert_eq!((m.fmt, m.n_args, m.level), ("", 0, Level::Info));
    // Through a user macro: the location is the user's statement.
    macro_rules! my_log {
        ($($t:tt)*) => { klog!($($t)*) };
    }
    let m = meta_of(|| line_of!(my_log!("via {}", 1u8)));
    assert_eq!((m.fmt, m.file), ("via {0}", file!()));
    mod inner {
        pub fn log() -> u32 {
            line_of!(klog::klog!("in a module"))
        }
    }
    let m = meta_of(inner::log);
    assert_eq!(m.module, concat!(module_path!(), "::inner"));
}

#[test]
fn sixteen_arguments() {
    let m = meta_of(|| {
        line_of!(klog!(
            "{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}",
            0u8,
            1u8,
            2u8,
            3u8,
            4u8,
            5u8,
            6u8,
            7u8,
            8u8,
            9u8,
            10u8,
            11u8,
            12u8,
            13u8,
            14u8,
            15u8
        ))
    });
    assert_eq!(m.n_args, 16);
    assert_eq!(
        m.fmt,
        "{0}{1}{2}{3}{4}{5}{6}{7}{8}{9}{10}{11}{12}{13}{14}{15}"
    );
}

#[test]
fn arguments_are_passed_in_final_order() {
    let (a, c) = (1u8, "cap");
    let mut line = 0;
    let cap = capture(|| {
        line = line_of!(klog!("{c} {n} {} {0} {n}", a, n = -2i32));
    });
    let ev = events(&cap);
    assert_eq!(
        ev,
        vec![Event {
            fmt: "{2} {1} {0} {0} {1}",
            line,
            types: vec![U8, I32, STR],
            // 1u8, zigzag(-2) = 3, "cap"
            payload: vec![1, 3, 3, b'c', b'a', b'p'],
        }]
    );
}

#[test]
fn expressions_and_temporaries() {
    let v = [10u32, 20];
    let (x, y) = (3u64, 3u64);
    let cap = capture(|| {
        // `==` is not a named argument; temporaries live until the event is recorded.
        klog!(
            "{} {} {} {}",
            x == y,
            String::from("tmp").as_str(),
            v.len() as u16,
            v[1]
        );
        // Block, method chain, reference, trailing comma.
        klog!(
            "{} {}",
            {
                let t = x + 1;
                t * 2
            },
            &v[0],
        );
    });
    let ev = events(&cap);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].types, vec![BOOL, STR, UINT, UINT]);
    assert_eq!(ev[0].payload, vec![1, 3, b't', b'm', b'p', 2, 20]);
    assert_eq!(ev[1].types, vec![UINT, UINT]);
    assert_eq!(ev[1].payload, vec![8, 10]);
}

#[test]
fn arguments_are_evaluated_once_and_only_when_enabled() {
    let calls = Cell::new(0);
    let val = || {
        calls.set(calls.get() + 1);
        7u8
    };
    let cap = capture(|| {
        klog!("{0} {0:x} {0:?}", val());
    });
    assert_eq!(calls.get(), 1);
    assert_eq!(events(&cap)[0].payload, vec![7]);

    // No handler: once seen, the statement is disabled and does not evaluate its arguments.
    let _g = serial();
    calls.set(0);
    for _ in 0..3 {
        klog!("disabled {}", val());
    }
    assert!(calls.get() <= 1, "evaluated {} times", calls.get());
}

#[test]
fn raw_records_bytes() {
    let v: Vec<u8> = vec![9, 8, 7];
    let mut lines = [0; 3];
    let cap = capture(|| {
        lines[0] = line_of!(klog_raw!(v));
        lines[1] = line_of!(klog_raw!(&[1u8, 2][..]));
        lines[2] = line_of!(klog_raw!("text"));
    });
    let raws = cap.raws.lock().unwrap().clone();
    assert_eq!(
        raws,
        vec![
            (lines[0], vec![9, 8, 7]),
            (lines[1], vec![1, 2]),
            (lines[2], b"text".to_vec())
        ]
    );
}

#[test]
fn hygiene_user_names_do_not_clash() {
    #[allow(non_snake_case)]
    let (__klog_args, __KLOG_CALLSITE) = (5u8, 6u8);
    let cap = capture(|| {
        klog!("{} {__klog_args} {__KLOG_CALLSITE}", __klog_args);
    });
    assert_eq!(events(&cap)[0].payload, vec![5, 5, 6]);
    assert_eq!(events(&cap)[0].fmt, "{0} {1} {2}");
}

#[test]
fn expression_positions() {
    let cap = capture(|| {
        // A statement is an expression of type `()`.
        match 2u8 {
            1 => klog!("one"),
            n => klog!("n={}", n),
        }
        (0..2u8).for_each(|i| klog!("closure {}", i));
        fn generic<T: klog::Arg + std::fmt::Display>(t: T) {
            klog!("generic {}", t);
        }
        generic(1u16);
        generic("s");
        // The callsite macro called directly with a plain crate path.
        klog::__private::klog_callsite!(klog, Debug, fmt, "direct {}", (9u8));
    });
    let fmts: Vec<_> = events(&cap).iter().map(|e| e.fmt).collect();
    assert_eq!(
        fmts,
        [
            "n={0}",
            "closure {0}",
            "closure {0}",
            "generic {0}",
            "generic {0}",
            "direct {0}"
        ]
    );
    assert_eq!(events(&cap)[4].types, vec![STR]);
}

#[test]
fn compiled_out_statements_are_checked_but_never_run() {
    let calls = Cell::new(0);
    let val = || {
        calls.set(calls.get() + 1);
        7u8
    };
    let x = 1u16;
    let cap = capture(|| {
        klog::__private::klog_callsite!(klog, Info, off, "{} {n:#x} {x}", (val()), (n = 5u8));
    });
    assert_eq!(calls.get(), 0);
    assert!(events(&cap).is_empty());
    let mut seen = false;
    klog::for_each_callsite(|cs| seen |= cs.meta().fmt == "{0} {1:#x} {2}");
    assert!(!seen, "an `off` statement defines no callsite");
}

/// Levels of the callsites registered for `line` of this file.
fn levels_on(line: u32) -> Vec<Level> {
    let mut v = Vec::new();
    klog::for_each_callsite(|cs| {
        if cs.meta().file == file!() && cs.meta().line == line {
            v.push(cs.meta().level);
        }
    });
    v.sort();
    v
}

/// The README's `klog!(Level::Warn, ...)` with the level as a path in every spelling: the
/// callsite's static level.
#[test]
fn level_as_a_path() {
    let m = meta_of(|| line_of!(klog!(klog::Level::Warn, "full path {}", 1u8)));
    assert_eq!((m.level, m.fmt), (Level::Warn, "full path {0}"));
    let m = meta_of(|| line_of!(klog!(::klog::Level::Error, "absolute path")));
    assert_eq!(m.level, Level::Error);
    // `Level::X` needs no `use klog::Level`.
    mod no_import {
        pub fn log() -> u32 {
            line_of!(klog::klog!(Level::Debug, "not imported"))
        }
    }
    let m = meta_of(no_import::log);
    assert_eq!(m.level, klog::Level::Debug);
    // A renamed import of the crate.
    let m = meta_of(|| {
        use klog as renamed;
        line_of!(klog!(renamed::Level::Trace, "renamed crate"))
    });
    assert_eq!(m.level, Level::Trace);
}

/// A level from a variable or any expression: each event goes through the callsite of its own
/// level, so it obeys the filter for that level and is recorded with it.
#[test]
fn level_from_a_variable_obeys_the_filter_per_event() {
    fn pick(i: u8) -> Level {
        Level::from_u8(i).unwrap()
    }
    let l = Level::Warn;
    let m = meta_of(|| line_of!(klog!(l, "var {}", 7u8)));
    assert_eq!((m.level, m.fmt, m.n_args), (Level::Warn, "var {0}", 1));

    let mut line = 0;
    let mut evaluated = 0;
    let cap = capture(|| {
        klog::set_max_level(Level::Warn);
        for i in 1..=5u8 {
            line = line_of!(klog!(pick(i), "dyn {}", {
                evaluated += 1;
                i
            }));
        }
        klog::set_max_level(Level::Trace);
    });
    let got: Vec<(u32, Vec<u8>)> = events(&cap)
        .into_iter()
        .map(|e| (e.line, e.payload))
        .collect();
    // Error and Warn pass `set_max_level(Warn)`; Info, Debug and Trace are filtered, and their
    // arguments never evaluated.
    assert_eq!(got, [(line, vec![1]), (line, vec![2])]);
    assert_eq!(evaluated, 2);
    let _g = serial();
    let lv = levels_on(line);
    assert!(
        lv.contains(&Level::Error) && lv.contains(&Level::Warn),
        "{lv:?}"
    );
}

/// A user type needs `klog::Arg` only: the decoder renders it as the primitive it encodes as,
/// so no `Display`/`Debug`/`LowerHex` impl is required for any spec.
#[test]
fn user_types_need_no_display() {
    struct Port(u16);
    impl klog::Arg for Port {
        const TYPE: klog::ArgType = <u16 as klog::Arg>::TYPE;
        const MAX_LEN: usize = <u16 as klog::Arg>::MAX_LEN;
        fn encoded_len(&self) -> usize {
            klog::Arg::encoded_len(&self.0)
        }
        fn encode(&self, w: &mut Writer<'_>) {
            klog::Arg::encode(&self.0, w)
        }
    }
    let p = Port(8080);
    let cap = capture(|| {
        klog!("port {} {:#x} {:?} {:>8}", p, p, &p, p);
    });
    let ev = events(&cap);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].fmt, "port {0} {1:#x} {2:?} {3:>8}");
    assert_eq!(ev[0].types, [UINT; 4]);
}

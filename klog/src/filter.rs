//! Runtime filtering from text: `RUST_LOG`-style level directives and dynamic-debug-style
//! per-callsite commands. Both compile to the callsite rule function of [`crate::set_rules`], so
//! a filtered-out callsite still costs one load.
//!
//! * [`set_filter`]: `"warn,my_crate::net=debug,my_crate::net::rx=off"` — a bare level is the
//!   default; `target=level` applies to module paths starting with `target` (the longest match
//!   wins); `off` disables.
//! * [`control`]: `"module my_crate::net file rx.rs line 42 format \"stalled\" level warn +p"` —
//!   every given condition must match; `+p` enables, `-p` disables; later commands override
//!   earlier ones for the callsites they match (like `/proc/dynamic_debug/control`).

use std::sync::Mutex;

use crate::callsite::Meta;
use crate::Level;

/// A filter or control command that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub String);

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid klog filter: {}", self.0)
    }
}

impl std::error::Error for FilterError {}

fn parse_level(s: &str) -> Result<Option<Level>, FilterError> {
    Ok(Some(match s.to_ascii_lowercase().as_str() {
        "off" => return Ok(None),
        "error" => Level::Error,
        "warn" | "warning" => Level::Warn,
        "info" => Level::Info,
        "debug" => Level::Debug,
        "trace" => Level::Trace,
        _ => return Err(FilterError(format!("unknown level {s:?}"))),
    }))
}

/// One dynamic-debug command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Command {
    module: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    format: Option<String>,
    level: Option<Level>,
    enable: bool,
}

impl Command {
    fn matches(&self, m: &Meta) -> bool {
        self.module
            .as_ref()
            .is_none_or(|p| m.module.starts_with(p.as_str()))
            && self
                .file
                .as_ref()
                .is_none_or(|f| m.file.ends_with(f.as_str()))
            && self.line.is_none_or(|l| l == m.line)
            && self
                .format
                .as_ref()
                .is_none_or(|s| m.fmt.contains(s.as_str()))
            && self.level.is_none_or(|l| l == m.level)
    }
}

#[derive(Debug, Clone, Default)]
struct Rules {
    /// `target=level` directives (level `None` = off).
    directives: Vec<(String, Option<Level>)>,
    commands: Vec<Command>,
}

impl Rules {
    fn verdict(&self, m: &Meta) -> Option<bool> {
        if let Some(c) = self.commands.iter().rev().find(|c| c.matches(m)) {
            return Some(c.enable);
        }
        let (_, level) = self
            .directives
            .iter()
            .filter(|(t, _)| m.module.starts_with(t.as_str()))
            .max_by_key(|(t, _)| t.len())?;
        Some(level.is_some_and(|l| m.level <= l))
    }
}

/// The current rules, kept to build the next set from.
static CURRENT: Mutex<Option<Rules>> = Mutex::new(None);

/// Installs `rules`: the closure holds its own immutable copy, so evaluating it (under the
/// callsite registry lock, possibly in a signal handler) takes no lock. The previous closure
/// is leaked: filters change rarely and a callsite may be evaluating it right now.
fn install(rules: Rules) {
    let f: &'static crate::callsite::RuleFn = Box::leak(Box::new(move |m: &Meta| rules.verdict(m)));
    crate::set_rules(Some(f));
}

/// Applies a `RUST_LOG`-style filter, replacing earlier directives (control commands stay).
pub fn set_filter(spec: &str) -> Result<(), FilterError> {
    let mut default = None;
    let mut directives = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((target, level)) => {
                let target = target.trim();
                if target.is_empty() {
                    return Err(FilterError(format!("empty target in {part:?}")));
                }
                directives.push((target.to_string(), parse_level(level.trim())?));
            }
            None => default = Some(parse_level(part)?),
        }
    }
    let mut cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    let mut rules = cur.take().unwrap_or_default();
    rules.directives = directives;
    if let Some(d) = default {
        // A bare `off` disables everything not matched by a directive.
        rules.directives.push((String::new(), d));
    }
    *cur = Some(rules.clone());
    drop(cur);
    install(rules);
    Ok(())
}

/// Splits a command into words, keeping `"quoted strings"` together.
fn words(cmd: &str) -> Result<Vec<String>, FilterError> {
    let mut out = Vec::new();
    let mut it = cmd.chars().peekable();
    while let Some(&c) = it.peek() {
        if c.is_whitespace() {
            it.next();
        } else if c == '"' {
            it.next();
            let mut w = String::new();
            loop {
                match it.next() {
                    Some('"') => break,
                    Some('\\') => w.extend(it.next()),
                    Some(c) => w.push(c),
                    None => return Err(FilterError(format!("unterminated quote in {cmd:?}"))),
                }
            }
            out.push(w);
        } else {
            let mut w = String::new();
            while let Some(&c) = it.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                it.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

/// Applies dynamic-debug-style commands (one per line or separated by `;`).
pub fn control(commands: &str) -> Result<(), FilterError> {
    let mut parsed = Vec::new();
    for cmd in commands
        .split(['\n', ';'])
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        let w = words(cmd)?;
        let mut c = Command::default();
        let mut flag = None;
        let mut i = 0;
        while i < w.len() {
            let key = w[i].as_str();
            if key == "+p" || key == "-p" {
                flag = Some(key == "+p");
                i += 1;
                continue;
            }
            let val = w
                .get(i + 1)
                .ok_or_else(|| FilterError(format!("{key:?} needs a value in {cmd:?}")))?;
            match key {
                "module" => c.module = Some(val.clone()),
                "file" => c.file = Some(val.clone()),
                "line" => {
                    c.line = Some(
                        val.parse()
                            .map_err(|_| FilterError(format!("bad line {val:?}")))?,
                    )
                }
                "format" => c.format = Some(val.clone()),
                "level" => {
                    c.level = Some(
                        parse_level(val)?
                            .ok_or_else(|| FilterError("level off in a control command".into()))?,
                    )
                }
                _ => return Err(FilterError(format!("unknown keyword {key:?} in {cmd:?}"))),
            }
            i += 2;
        }
        c.enable = flag.ok_or_else(|| FilterError(format!("missing +p or -p in {cmd:?}")))?;
        parsed.push(c);
    }
    let mut cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    let mut rules = cur.take().unwrap_or_default();
    rules.commands.extend(parsed);
    *cur = Some(rules.clone());
    drop(cur);
    install(rules);
    Ok(())
}

/// Removes every directive and command.
pub fn clear() {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = None;
    crate::set_rules(None);
}

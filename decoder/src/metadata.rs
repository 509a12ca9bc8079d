//! The `metadata` stream: header, clock references and callsite definitions
//! (docs/FORMAT.md, "metadata stream").

use std::collections::BTreeMap;

use klog::wire::{self, record, SubbufHeader, Totals, META_MAGIC};
use klog::{ArgType, Level};

use crate::cursor::{Cursor, ReadError};
use crate::error::Error;
use crate::render::Template;
use crate::stats::{Stats, WarningKind};

/// Buffer mode of the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Drop new events while the buffer is full.
    NoOverwrite,
    /// Flight recorder: overwrite the oldest sub-buffers.
    Overwrite,
    /// A mode byte this decoder does not know.
    Unknown(u8),
}

/// The header record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceHeader {
    /// Format version: [`klog::wire::VERSION`] (3), [`klog::wire::VERSION_PREV_DELTAS`] (2)
    /// or [`klog::wire::VERSION_BASE_DELTAS`] (1) once parsed (see
    /// [`TraceHeader::cumulative_deltas`]).
    pub version: u16,
    /// Number of per-CPU streams (`cpu0..cpuN-1`).
    pub n_cpus: u16,
    /// Buffer mode.
    pub mode: Mode,
    /// Sub-buffer size in bytes.
    pub subbuf_size: u32,
    /// Sub-buffers per buffer.
    pub n_subbufs: u32,
    /// The trace id every sub-buffer header must carry (version 3; `None` before).
    pub trace_id: Option<u64>,
}

impl TraceHeader {
    /// The sub-buffer header magic of this version ("KLG2" from version 3 on, else "KLG1").
    pub fn subbuf_magic(&self) -> [u8; 4] {
        wire::subbuf_layout(self.version).0
    }

    /// The sub-buffer header length of this version (40 from version 3 on, else 32).
    pub fn subbuf_header_len(&self) -> usize {
        wire::subbuf_layout(self.version).1
    }

    /// Parses a sub-buffer header of this version's layout at the start of `b`.
    pub fn parse_subbuf(&self, b: &[u8]) -> Option<SubbufHeader> {
        SubbufHeader::parse_as(b, self.subbuf_magic())
    }

    /// Whether a frame's `ts_delta` is relative to the previous frame of its sub-buffer
    /// (version 2) rather than to the sub-buffer's `base_ts` (version 1).
    pub fn cumulative_deltas(&self) -> bool {
        self.version != wire::VERSION_BASE_DELTAS
    }
}

/// Which clock raw timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockSource {
    /// `CLOCK_MONOTONIC` nanoseconds.
    Monotonic,
    /// TSC ticks.
    Tsc,
    /// A source byte this decoder does not know.
    Unknown(u8),
}

/// A clock record: a raw clock value and `CLOCK_MONOTONIC` at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockRecord {
    /// Clock source.
    pub source: ClockSource,
    /// Raw value.
    pub raw: u64,
    /// `CLOCK_MONOTONIC` in ns.
    pub mono_ns: u64,
    /// Raw ticks per second.
    pub ticks_per_sec: u64,
}

/// What a callsite records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallsiteKind {
    /// `klog!`: format string and arguments.
    Fmt,
    /// `klog_raw!`: bytes.
    Raw,
}

/// A callsite definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Callsite {
    /// Wire id.
    pub id: u64,
    /// Level byte (1 Error .. 5 Trace; see [`Callsite::level`]).
    pub level_raw: u8,
    /// Event or raw.
    pub kind: CallsiteKind,
    /// Normalised format string.
    pub fmt: String,
    /// `module_path!()` of the statement (the "target").
    pub module: String,
    /// `file!()`.
    pub file: String,
    /// `line!()`.
    pub line: u32,
    /// Argument type tags as stored.
    pub arg_tags: Vec<u8>,
    /// The tags as types; `None` if one is unknown (frames of the callsite cannot be split).
    pub arg_types: Option<Vec<ArgType>>,
    /// The parsed format string.
    pub template: Template,
}

impl Callsite {
    /// The level, if the byte is a known one.
    pub fn level(&self) -> Option<Level> {
        Level::from_u8(self.level_raw)
    }

    /// Upper-case level name, `L<n>` for unknown bytes.
    pub fn level_name(&self) -> std::borrow::Cow<'static, str> {
        match self.level() {
            Some(l) => l.as_str().into(),
            None => format!("L{}", self.level_raw).into(),
        }
    }
}

/// Everything the metadata stream defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// The header record.
    pub header: TraceHeader,
    /// Clock records, in stream order.
    pub clocks: Vec<ClockRecord>,
    /// Callsite definitions by id.
    pub callsites: BTreeMap<u64, Callsite>,
    /// Bytes of the stream consumed by whole records (a follower resumes here).
    pub parsed_len: usize,
    /// End-of-trace counters by CPU (version 3 totals records; the last one of a CPU wins).
    pub totals: BTreeMap<u16, Totals>,
}

impl Metadata {
    /// Overwrite mode.
    pub fn overwrite(&self) -> bool {
        self.header.mode == Mode::Overwrite
    }

    /// A callsite by id.
    pub fn callsite(&self, id: u64) -> Option<&Callsite> {
        self.callsites.get(&id)
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn str_field(c: &mut Cursor<'_>, bad_utf8: &mut bool) -> Result<String, ReadError> {
    let n = c.varint()?;
    let b = c.take(usize::try_from(n).map_err(|_| ReadError::Eof)?)?;
    match std::str::from_utf8(b) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => {
            *bad_utf8 = true;
            Ok(lossy(b))
        }
    }
}

fn parse_header(body: &[u8]) -> Result<TraceHeader, Error> {
    let mut c = Cursor::new(body);
    let magic = c
        .take(META_MAGIC.len())
        .map_err(|_| Error::NotKlogMetadata("header record too short for its magic".into()))?;
    if magic != META_MAGIC {
        return Err(Error::NotKlogMetadata(format!(
            "header magic is {:?}, expected \"KLOGMETA\"",
            String::from_utf8_lossy(magic)
        )));
    }
    let version = c
        .u16()
        .map_err(|_| Error::NotKlogMetadata("header record truncated before its version".into()))?;
    // Version 2 changed only what a frame's ts_delta is relative to, version 3 the sub-buffer
    // header and the trace id (docs/FORMAT.md, "Versioning"): the stream decoders handle all.
    if !(wire::VERSION_BASE_DELTAS..=wire::VERSION).contains(&version) {
        return Err(Error::UnsupportedVersion { found: version });
    }
    let fields = (|| {
        let n_cpus = c.u16()?;
        let mode = match c.u8()? {
            0 => Mode::NoOverwrite,
            1 => Mode::Overwrite,
            m => Mode::Unknown(m),
        };
        Ok::<_, ReadError>(TraceHeader {
            version,
            n_cpus,
            mode,
            subbuf_size: c.u32()?,
            n_subbufs: c.u32()?,
            trace_id: if version >= 3 { Some(c.u64()?) } else { None },
        })
    })();
    fields.map_err(|_| Error::NotKlogMetadata("header record truncated".into()))
}

fn parse_clock(body: &[u8]) -> Result<ClockRecord, ReadError> {
    let mut c = Cursor::new(body);
    let source = match c.u8()? {
        0 => ClockSource::Monotonic,
        1 => ClockSource::Tsc,
        s => ClockSource::Unknown(s),
    };
    Ok(ClockRecord {
        source,
        raw: c.u64()?,
        mono_ns: c.u64()?,
        ticks_per_sec: c.u64()?,
    })
}

/// A callsite record; `Ok(Err(why))` for a record that parses but is unusable.
fn parse_callsite(body: &[u8], bad_utf8: &mut bool) -> Result<Result<Callsite, String>, ReadError> {
    let mut c = Cursor::new(body);
    let id = c.varint()?;
    let level_raw = c.u8()?;
    let kind = c.u8()?;
    let fmt = str_field(&mut c, bad_utf8)?;
    let module = str_field(&mut c, bad_utf8)?;
    let file = str_field(&mut c, bad_utf8)?;
    let line = c.varint()?;
    let n_args = c.varint()?;
    let arg_tags = c
        .take(usize::try_from(n_args).map_err(|_| ReadError::Eof)?)?
        .to_vec();
    let kind = match kind {
        0 => CallsiteKind::Fmt,
        1 => CallsiteKind::Raw,
        k => return Ok(Err(format!("callsite {id}: unknown kind {k}"))),
    };
    let arg_types = arg_tags
        .iter()
        .map(|&t| ArgType::from_u8(t))
        .collect::<Option<Vec<_>>>();
    let template = Template::parse(&fmt);
    Ok(Ok(Callsite {
        id,
        level_raw,
        kind,
        fmt,
        module,
        file,
        line: u32::try_from(line).unwrap_or(u32::MAX),
        arg_tags,
        arg_types,
        template,
    }))
}

/// Parses a metadata stream. Errors only when the stream cannot be a klog metadata stream of
/// version 1, 2 or 3 (empty, no header first, wrong magic, unknown version); a truncated or
/// malformed record later on is a warning in `stats` and parsing keeps what it has.
pub fn parse_metadata(data: &[u8], stats: &mut Stats) -> Result<Metadata, Error> {
    if data.is_empty() {
        return Err(Error::EmptyMetadata);
    }
    let mut c = Cursor::new(data);
    let mut meta: Option<Metadata> = None;
    loop {
        let start = c.pos();
        if c.rest().is_empty() {
            break;
        }
        let off = Some(start as u64);
        let len = match c.varint() {
            Ok(l) => l,
            Err(ReadError::Eof) => {
                stats.warn(
                    WarningKind::MetaTruncated,
                    None,
                    off,
                    format_args!("stream ends inside a record length"),
                );
                break;
            }
            Err(ReadError::Overflow) => {
                stats.warn(
                    WarningKind::MetaMalformed,
                    None,
                    off,
                    format_args!("record length varint overflows; rest of the stream ignored"),
                );
                break;
            }
        };
        let rec = match usize::try_from(len).ok().and_then(|n| c.take(n).ok()) {
            Some(r) => r,
            None => {
                if meta.is_none() {
                    return Err(Error::NotKlogMetadata(
                        "the stream ends inside its first record (truncated, or not klog)".into(),
                    ));
                }
                stats.warn(
                    WarningKind::MetaTruncated,
                    None,
                    off,
                    format_args!(
                        "record of {len} bytes runs past the end ({} bytes left); ignored",
                        c.rest().len()
                    ),
                );
                break;
            }
        };
        let Some((&kind, body)) = rec.split_first() else {
            if meta.is_none() {
                return Err(Error::NotKlogMetadata("the first record is empty".into()));
            }
            stats.warn(
                WarningKind::MetaMalformed,
                None,
                off,
                format_args!("empty record"),
            );
            continue;
        };
        let Some(m) = meta.as_mut() else {
            if kind != record::HEADER {
                return Err(Error::NotKlogMetadata(format!(
                    "the first record is of kind {kind}, not a header"
                )));
            }
            meta = Some(Metadata {
                header: parse_header(body)?,
                clocks: Vec::new(),
                callsites: BTreeMap::new(),
                parsed_len: c.pos(),
                totals: BTreeMap::new(),
            });
            continue;
        };
        match kind {
            record::HEADER => stats.warn(
                WarningKind::MetaDuplicate,
                None,
                off,
                format_args!("second header record ignored"),
            ),
            record::CLOCK => match parse_clock(body) {
                Ok(r) => m.clocks.push(r),
                Err(_) => stats.warn(
                    WarningKind::MetaMalformed,
                    None,
                    off,
                    format_args!("clock record too short ({} bytes)", body.len()),
                ),
            },
            record::CALLSITE => {
                let mut bad_utf8 = false;
                match parse_callsite(body, &mut bad_utf8) {
                    Err(_) => stats.warn(
                        WarningKind::MetaMalformed,
                        None,
                        off,
                        format_args!("callsite record too short ({} bytes)", body.len()),
                    ),
                    Ok(Err(why)) => {
                        stats.warn(WarningKind::MetaMalformed, None, off, format_args!("{why}"))
                    }
                    Ok(Ok(cs)) => {
                        if bad_utf8 {
                            stats.warn(
                                WarningKind::MetaMalformed,
                                None,
                                off,
                                format_args!("callsite {}: invalid UTF-8 (replaced)", cs.id),
                            );
                        }
                        if cs.arg_types.is_none() {
                            stats.warn(
                                WarningKind::BadArgTypes,
                                None,
                                off,
                                format_args!(
                                    "callsite {} ({}): unknown argument type tag in {:?}; its \
                                     events are skipped",
                                    cs.id, cs.module, cs.arg_tags
                                ),
                            );
                        }
                        if cs.kind == CallsiteKind::Fmt
                            && cs.template.arg_count() > cs.arg_tags.len()
                        {
                            stats.warn(
                                WarningKind::BadFormat,
                                None,
                                off,
                                format_args!(
                                    "callsite {}: format string {:?} uses {} arguments, the \
                                     callsite has {}",
                                    cs.id,
                                    cs.fmt,
                                    cs.template.arg_count(),
                                    cs.arg_tags.len()
                                ),
                            );
                        }
                        if let Some(e) = cs.template.error() {
                            stats.warn(
                                WarningKind::BadFormat,
                                None,
                                off,
                                format_args!("callsite {}: format string {:?}: {e}", cs.id, cs.fmt),
                            );
                        }
                        match m.callsites.get(&cs.id) {
                            None => {
                                m.callsites.insert(cs.id, cs);
                            }
                            Some(old) if *old == cs => {}
                            Some(_) => stats.warn(
                                WarningKind::MetaDuplicate,
                                None,
                                off,
                                format_args!(
                                    "callsite {} defined again differently; first definition kept",
                                    cs.id
                                ),
                            ),
                        }
                    }
                }
            }
            record::TOTALS if m.header.version >= 3 => match Totals::parse(body) {
                Some(t) => {
                    m.totals.insert(t.cpu, t);
                }
                None => stats.warn(
                    WarningKind::MetaMalformed,
                    None,
                    off,
                    format_args!("totals record too short ({} bytes)", body.len()),
                ),
            },
            k => stats.warn(
                WarningKind::MetaUnknownRecord,
                None,
                off,
                format_args!("record kind {k} ({len} bytes) skipped"),
            ),
        }
        m.parsed_len = c.pos();
    }
    meta.ok_or_else(|| Error::NotKlogMetadata("no header record".into()))
}

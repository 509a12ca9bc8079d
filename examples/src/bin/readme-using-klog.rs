//! The README's "Using klog" example, verbatim (extracted by build.rs; run by
//! tests/readme.rs). Usage: `readme-using-klog [TRACE_DIR]`.

include!(concat!(env!("OUT_DIR"), "/readme_using_klog.rs"));

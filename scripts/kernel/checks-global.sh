# Sourced by /init: a global channel (is_global set by create_buf_file) on both relays: one
# buffer, file cpu0 only, written from every CPU; C and Rust must return the same bytes.
gl_check() {
    local D=/sys/kernel/debug/rsrelay_test ok=1 c
    insmod /modules/rsrelay_test.ko || { echo "check: global: FAIL (insmod)"; return; }
    echo "open 128 4 4 0 1" > $D/ctl || { echo "check: global: FAIL (open)"; rmmod rsrelay_test; return; }
    [ "$(ls $D/c | tr '\n' ' ')" = "cpu0 " ] && [ "$(ls $D/rust | tr '\n' ' ')" = "cpu0 " ] \
        || { ok=0; echo "  global: files: c: $(ls $D/c) rust: $(ls $D/rust)"; }
    for c in 0 1 2 3 1 0 3 2 2 1; do echo "write $c $((20 + c * 7)) $c" > $D/ctl || ok=0; done
    echo flush > $D/ctl
    cat $D/c/cpu0 > /tmp/gl-c; cat $D/rust/cpu0 > /tmp/gl-r
    cmp -s /tmp/gl-c /tmp/gl-r || { ok=0; echo "  global: C $(wc -c < /tmp/gl-c) bytes, Rust $(wc -c < /tmp/gl-r) bytes differ"; }
    # 10 writes of 20..41 bytes = 305 bytes, 4-byte headers, 124 payload bytes per sub-buffer:
    # the bytes read must be more than the payload (headers included) and equal on both sides.
    [ "$(wc -c < /tmp/gl-r)" -gt 305 ] || { ok=0; echo "  global: only $(wc -c < /tmp/gl-r) bytes"; }
    echo close > $D/ctl
    rmmod rsrelay_test
    [ $ok = 1 ] && echo "check: global: ok" || echo "check: global: FAIL"
}
gl_check

#!/usr/bin/env bash
# kernel-test.sh -- build a small Rust-enabled Linux 6.12 (cached), build this project's kernel
# modules with the top-level Kbuild and static user-space checkers, boot QEMU (-smp 4) and run the
# in-guest checks. Last line: `kernel-test: PASS` or `kernel-test: FAIL (...)`.
#
#   bash scripts/kernel-test.sh            # everything (needs root for apt on a fresh machine)
#   bash scripts/kernel-test.sh modules    # selected steps: install bindgen kernel modules user initramfs boot
#
# Knobs: KCACHE (kernel build cache, default /var/cache/rsrelay-kernel), ACCEL=auto|kvm|tcg,
#        SKIP_APT=1, JOBS, W (work dir for modules/initramfs/logs, default target/kernel-test).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${W:-$ROOT/target/kernel-test}
# Extra static binaries (cargo bin names of the workspace) copied into the guest's /bin. The
# examples' checks (scripts/kernel/checks-examples.sh) need kleak-report and reserve-check:
# they are always included.
GUEST_BINS=$(printf '%s\n' kleak-report reserve-check ${GUEST_BINS:-} | sort -u | tr '\n' ' ')
KCACHE=${KCACHE:-/var/cache/rsrelay-kernel}
ACCEL=${ACCEL:-auto}
JOBS=${JOBS:-$(nproc)}
RUST_DEB_VER=1.85.0+dfsg3-1~deb12u3 # the kernel's Rust needs exactly this rustc (rustup's has no rust-src)
BINDGEN_VER=0.72.1
BINDGEN=/opt/bindgen/bin/bindgen
KSRC_TAR=/usr/src/linux-source-6.12.tar.xz
FRAGMENT=$ROOT/scripts/kernel/config.fragment
LOG=$W/logs
mkdir -p "$W" "$LOG"

# rustup's rustc comes first in PATH and has no rust-src: name Debian's tools explicitly.
KMAKE=(LLVM=-19 RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc HOSTRUSTC=/usr/bin/rustc BINDGEN=$BINDGEN)

T0=$(date +%s)
step() { echo "=== [$(date +%T)] $*"; }
FAILED=
CUR_STEP=setup
fail() { FAILED=1; echo "kernel-test: FAIL ($*)"; exit 1; }
# Any other failure (set -e) still ends with a FAIL line naming the step.
trap 'rc=$?; if [ $rc -ne 0 ] && [ -z "$FAILED" ]; then echo "kernel-test: FAIL (step $CUR_STEP exited $rc)"; fi' EXIT

do_install() {
    [ "${SKIP_APT:-0}" = 1 ] && return 0
    step "apt install"
    local want=(linux-source-6.12 clang-19 lld-19 llvm-19 libclang-19-dev bc flex bison libelf-dev
        libssl-dev make gcc libc6-dev perl xz-utils file qemu-system-x86 busybox-static cpio rsync gzip
        "rustc-web=$RUST_DEB_VER" "rust-web-src=$RUST_DEB_VER" "libstd-rust-web-dev=$RUST_DEB_VER")
    # Skip apt entirely when everything is there (repeat runs, offline developers).
    local missing=0 p
    for p in "${want[@]}"; do
        local name=${p%%=*} ver=${p#*=}
        local have; have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
        case $have in "install ok installed"*) ;; *) missing=1 ;; esac
        [ "$name" != "$p" ] && [ "${have##* }" != "$ver" ] && missing=1
    done
    if [ $missing = 1 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${want[@]}" >/dev/null
    fi
    /usr/bin/rustc --version
}

do_bindgen() {
    if ! "$BINDGEN" --version 2>/dev/null | grep -q "bindgen $BINDGEN_VER"; then
        step "cargo install bindgen-cli $BINDGEN_VER"
        cargo install --locked bindgen-cli --version "$BINDGEN_VER" --root /opt/bindgen
    fi
}

# The cache key: kernel package version + config fragment + toolchain.
kernel_key() {
    {
        dpkg-query -W -f='${Version}' linux-source-6.12
        cat "$FRAGMENT"
        /usr/bin/rustc --version
        clang-19 --version | head -1
        "$BINDGEN" --version
    } | sha256sum | cut -c1-16
}

set_kdir() {
    local key; key=$(kernel_key)
    KSRC=$KCACHE/src-$(dpkg-query -W -f='${Version}' linux-source-6.12)/linux-source-6.12
    KDIR=$KCACHE/build-$key
}

do_kernel() {
    set_kdir
    if [ -f "$KDIR/.rsrelay-done" ]; then
        echo "kernel: cached $KDIR"
        return 0
    fi
    step "kernel build into $KDIR (-j$JOBS)"
    mkdir -p "$(dirname "$KSRC")"
    [ -f "$KSRC/Makefile" ] || tar -xf "$KSRC_TAR" -C "$(dirname "$KSRC")"
    rm -rf "$KDIR"; mkdir -p "$KDIR"
    make -C "$KSRC" O="$KDIR" "${KMAKE[@]}" rustavailable
    make -C "$KSRC" O="$KDIR" "${KMAKE[@]}" tinyconfig >/dev/null
    # shellcheck disable=SC2046
    "$KSRC/scripts/config" --file "$KDIR/.config" $(grep -v '^#' "$FRAGMENT" | tr '\n' ' ')
    make -C "$KSRC" O="$KDIR" "${KMAKE[@]}" olddefconfig >/dev/null
    local o
    for o in RUST RELAY DEBUG_FS MODULE_UNLOAD SMP KASAN PROVE_LOCKING TRACING ACPI HOTPLUG_CPU; do
        grep -q "^CONFIG_$o=y" "$KDIR/.config" || fail "config: CONFIG_$o not enabled"
    done
    if ! make -C "$KSRC" O="$KDIR" "${KMAKE[@]}" -j"$JOBS" bzImage modules > "$LOG/kernel.log" 2>&1; then
        tail -40 "$LOG/kernel.log"; fail "kernel build"
    fi
    touch "$KDIR/.rsrelay-done"
    echo "kernel: built $KDIR ($(du -sh "$KDIR" | cut -f1))"
}

# The modules are built from a copy of the sources they use (same relative paths), so the
# clone stays free of Kbuild's output.
do_modules() {
    set_kdir
    step "modules (Kbuild, M=$W/kbuild)"
    local m=$W/kbuild
    mkdir -p "$m/relay/src" "$m/kernel-tests"
    cp "$ROOT/Kbuild" "$ROOT/klog.mk" "$m/"
    rsync -a --delete "$ROOT/relay/src/core" "$ROOT/relay/src/kernel" "$m/relay/src/" \
        --exclude '*.o' --exclude '.*.cmd' --exclude '*_bindings.rs'
    rsync -a --delete "$ROOT/kernel-tests/module" "$m/kernel-tests/" \
        --exclude '*.o' --exclude '.*.cmd' --exclude '*_bindings.rs'
    mkdir -p "$m/klog/src" "$m/klog-macros/src" "$m/examples"
    rsync -a --delete --exclude '*.o' --exclude '.*.cmd' --exclude '*_bindings.rs' \
        "$ROOT/klog/src/" "$m/klog/src/"
    rsync -a --delete "$ROOT/klog-macros/src/" "$m/klog-macros/src/"
    rsync -a --delete --exclude '*.o' --exclude '.*.cmd' "$ROOT/examples/kernel" "$m/examples/"
    if ! make -C "$KDIR" M="$m" "${KMAKE[@]}" -j"$JOBS" modules > "$LOG/modules.log" 2>&1; then
        grep -E "error|warning" -A5 "$LOG/modules.log" | head -80; fail "module build"
    fi
    grep -E "^(warning|error)|: warning" "$LOG/modules.log" | head -20 || true
    ls -l "$m"/*.ko
}

# Builds that must fail, each with the message that names the problem (issue 18): a klog!
# client without `--cfg klog_client`, an f32 argument in kernel code, the wrong rustc. Each is a
# one-file module next to the project's modules, built through klog.mk.
do_build_errors() {
    set_kdir
    step "klog build errors (klog.mk, M=$W/neg/*)"
    local name flags want d out first arg
    # A rustc that is not the kernel's (as rustup's would be, first in PATH).
    mkdir -p "$W/neg"
    printf '#!/bin/sh\necho "rustc 1.99.0 (not the kernel'"'"'s)"\n' > "$W/neg/rustc-other"
    chmod +x "$W/neg/rustc-other"
    while IFS='|' read -r name flags want; do
        flags=${flags//@W@/$W}; want=${want//@W@/$W}
        d=$W/neg/$name
        rm -rf "$d"; mkdir -p "$d"
        {
            echo "KLOG := $W/kbuild"
            echo 'include $(KLOG)/klog.mk'
            echo "obj-m += neg_$name.o"
            if [ "$name" = nocfg ]; then
                # The proc macro but not the cfg: before the facade checked, this built a
                # module whose callsites no handler ever saw.
                echo "RUSTFLAGS_neg_nocfg.o := --extern klog_macros=\$(obj)/libklog_macros.so"
                echo "\$(obj)/neg_nocfg.o: \$(obj)/libklog_macros.so"
            else
                echo "\$(call klog_client,neg_$name.o)"
            fi
        } > "$d/Kbuild"
        arg=7u32
        [ "$name" = float ] && arg=1.5f32
        printf '%s\n' 'use kernel::prelude::*;' '#[macro_use]' \
            "#[path = \"$W/kbuild/klog/src/kernel/mod.rs\"]" 'mod klog;' \
            "module! { type: M, name: \"neg_$name\", license: \"GPL\", }" 'struct M;' \
            'impl kernel::Module for M {' \
            '    fn init(_m: &'"'"'static ThisModule) -> Result<Self> {' \
            "        klog!(\"value {}\", $arg);" '        Ok(M)' '    }' '}' > "$d/neg_$name.rs"
        # shellcheck disable=SC2086
        if out=$(make -C "$KDIR" M="$d" "${KMAKE[@]}" $flags modules 2>&1); then
            fail "build error $name: the module built"
        fi
        # The first error must be the one that names the problem.
        first=$(grep -m1 -E '^error|\*\*\*' <<< "$out" || true)
        if ! grep -qF -- "$want" <<< "$first"; then
            grep -E '^error|\*\*\*' <<< "$out" | head -5
            fail "build error $name: the first error does not say \"$want\""
        fi
        echo "build-error: $name: ok (${first:0:160})"
    done <<'CASES'
nocfg||needs `--cfg klog_client`
float||floating point is not available in the kernel
rustc|RUSTC=@W@/neg/rustc-other|klog.mk: RUSTC=@W@/neg/rustc-other is "rustc 1.99.0 (not the kernel's)" but
CASES
}

# readme_block NAME: the fenced block after `<!-- kernel-dev:NAME -->` in README.md, verbatim.
readme_block() {
    awk -v m="<!-- kernel-dev:$1 -->" '
        $0 == m { want = 1; next }
        want && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }' "$ROOT/README.md"
}

# README.md's "In the kernel" section as a kernel developer follows it: its env block is replaced
# by this machine's values (same tools), every other block runs as written. `mymod/` is written
# from the README's Kbuild and mymod.rs next to `relay-rs/` (the project's modules built by
# do_modules), built with the README's commands; the guest runs the README's `run` block
# (scripts/kernel/checks-readme.sh checks its output).
do_readme() {
    set_kdir
    step "README: In the kernel (mymod, $W/readme)"
    local r=$W/readme b t0
    rm -rf "$r"; mkdir -p "$r/mymod"
    ln -s "$W/kbuild" "$r/relay-rs"
    for b in env build build-decode Kbuild mymod.rs build-mymod run; do
        [ -n "$(readme_block "$b")" ] || fail "README: no kernel-dev:$b block"
    done
    readme_block Kbuild > "$r/mymod/Kbuild"
    readme_block mymod.rs > "$r/mymod/mymod.rs"
    readme_block run > "$r/run.sh"
    # The README's toolchain line is this harness's, up to where bindgen was installed.
    local theirs ours="${KMAKE[*]}"
    ours=${ours% BINDGEN=*}
    theirs=$(HOME=/home/dev; eval "$(readme_block env)"; echo "${KMAKE% BINDGEN=*}")
    [ "$theirs" = "$ours" ] || fail "README: KMAKE \"$theirs\" is not \"$ours\""
    t0=$(date +%s)
    # The developer's env block, with this machine's paths; then the build blocks verbatim.
    # klog-decode's static build reuses do_user's target directory (same flags: a no-op there).
    (
        set -e
        KDIR=$KDIR KLOG=$W/kbuild KMAKE="${KMAKE[*]}"   # relay-rs/ is a link to it
        export CARGO_TARGET_DIR=$W/target-static
        cd "$r"
        eval "$(readme_block build)"
        (cd "$ROOT" && eval "$(readme_block build-decode)")
        eval "$(readme_block build-mymod)"
    ) > "$LOG/readme.log" 2>&1 || { tail -30 "$LOG/readme.log"; fail "README build blocks"; }
    [ -f "$r/mymod/mymod.ko" ] || fail "README: no mymod.ko"
    echo "README: project modules, static klog-decode and mymod.ko built in $(( $(date +%s) - t0 ))s"
}

# Static user-space binaries for the guest (no libc in the initramfs).
do_user() {
    step "static user-space checkers"
    rustup target add x86_64-unknown-linux-gnu >/dev/null 2>&1 || true
    (cd "$ROOT" && RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$W/target-static" \
        cargo build -q --release --target x86_64-unknown-linux-gnu -p relay-ktest -p klog-decode) || fail "user build"
    local bins=() b
    for b in $GUEST_BINS; do bins+=(--bin "$b"); done
    if [ ${#bins[@]} -gt 0 ]; then
        (cd "$ROOT" && RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$W/target-static" \
            cargo build -q --release --target x86_64-unknown-linux-gnu "${bins[@]}") || fail "user build (GUEST_BINS)"
    fi
    USERBIN=$W/target-static/x86_64-unknown-linux-gnu/release
}

do_initramfs() {
    set_kdir
    step "initramfs"
    USERBIN=${USERBIN:-$W/target-static/x86_64-unknown-linux-gnu/release}
    local list=$W/initramfs.list
    {
        echo "dir /dev 0755 0 0"
        echo "nod /dev/console 0600 0 0 c 5 1"
        echo "nod /dev/null 0666 0 0 c 1 3"
        for d in bin proc sys tmp modules; do echo "dir /$d 0755 0 0"; done
        echo "file /bin/busybox $(readlink -f /bin/busybox) 0755 0 0"
        echo "file /init $ROOT/scripts/kernel/init.sh 0755 0 0"
        local ko f
        for ko in "$W"/kbuild/*.ko; do echo "file /modules/${ko##*/} $ko 0644 0 0"; done
        # README.md's "In the kernel": its module, its guest commands (checks-readme.sh) and the
        # static klog-decode next to them, as the README has them.
        if [ -f "$W/readme/mymod/mymod.ko" ]; then
            echo "dir /readme 0755 0 0"
            echo "file /readme/mymod.ko $W/readme/mymod/mymod.ko 0644 0 0"
            echo "file /readme/run.sh $W/readme/run.sh 0644 0 0"
            echo "file /readme/klog-decode $USERBIN/klog-decode 0755 0 0"
        fi
        # Static user-space tools of the workspace used in the guest.
        for f in relay-kcheck klog-decode $GUEST_BINS; do echo "file /bin/$f $USERBIN/$f 0755 0 0"; done
        # Check scripts sourced by /init (scripts/kernel/checks-*.sh).
        echo "dir /checks 0755 0 0"
        for f in "$ROOT"/scripts/kernel/checks-*.sh; do
            [ -f "$f" ] && echo "file /checks/${f##*/} $f 0644 0 0"
        done
    } > "$list"
    "$KDIR/usr/gen_init_cpio" "$list" | gzip -1 > "$W/initramfs.cpio.gz"
}

kvm_usable() {
    [ -w /dev/kvm ] || return 1
    # /dev/kvm without VT-x/AMD-V (e.g. PVM) cannot run a stock kernel.
    [ -d /sys/module/kvm_intel ] || [ -d /sys/module/kvm_amd ]
}

boot_once() { # $1 = kvm|tcg
    local mode=$1 out=$LOG/guest-$1.log accel=(-accel tcg -cpu max)
    [ "$mode" = kvm ] && accel=(-enable-kvm -cpu host)
    step "boot ($mode): qemu -smp 4 -m 1G"
    timeout "${BOOT_TIMEOUT:-1500}" qemu-system-x86_64 "${accel[@]}" -smp 4 -m 1G \
        -kernel "$KDIR/arch/x86/boot/bzImage" -initrd "$W/initramfs.cpio.gz" \
        -nographic -no-reboot -append "console=ttyS0 panic=-1 oops=panic quiet loglevel=4" \
        < /dev/null > "$out" 2>&1 || true
    tr -d '\r' < "$out" > "$out.txt"
    grep -q "GUEST-END" "$out.txt"
}

# checks-klog.sh prints the decoded text and the --stats output (indented) of its klog-record run
# between KLOG-TEXT-BEGIN/END and KLOG-STATS-BEGIN/END: verify them again here, with the verifier built
# for the host (the exact event set, kernel-tests/src/klog_verify.rs).
verify_klog_host() {
    [ -f "$ROOT/scripts/kernel/checks-klog.sh" ] || return 0
    local d=$W/klog-host begin kv events= timer= cpus=
    mkdir -p "$d"
    begin=$(grep -m1 '^KLOG-TEXT-BEGIN ' "$GUESTLOG") || fail "klog: no KLOG-TEXT-BEGIN in $GUESTLOG"
    grep -q '^KLOG-TEXT-END$' "$GUESTLOG" && grep -q '^KLOG-STATS-END$' "$GUESTLOG" \
        || fail "klog: the guest's klog text or stats are incomplete"
    sed -n '/^KLOG-TEXT-BEGIN /,/^KLOG-TEXT-END$/p' "$GUESTLOG" | sed '1d;$d' > "$d/text.txt"
    sed -n '/^KLOG-STATS-BEGIN$/,/^KLOG-STATS-END$/p' "$GUESTLOG" | sed '1d;$d;s/^  //' > "$d/stats.txt"
    for kv in ${begin#KLOG-TEXT-BEGIN }; do
        case $kv in events=*) events=${kv#*=} ;; timer=*) timer=${kv#*=} ;; cpus=*) cpus=${kv#*=} ;; esac
    done
    [ -n "$events" ] && [ -n "$timer" ] && [ -n "$cpus" ] || fail "klog: bad marker line: $begin"
    step "host: klog-verify of the guest's klog-record text ($(wc -l < "$d/text.txt") lines, $events events x $cpus CPUs + $timer timer)"
    (cd "$ROOT" && cargo run -q --release -p relay-ktest -- klog-verify "$d/text.txt" \
        --stats "$d/stats.txt" --events "$events" --timer "$timer" --cpus "$cpus" \
        --name host-klog-verify) > "$d/verify.txt" 2>&1 || true
    cat "$d/verify.txt"
    grep -q '^check: host-klog-verify: ok' "$d/verify.txt" || fail "host klog-verify (see $d)"
}

do_boot() {
    set_kdir
    local mode=$ACCEL
    if [ "$mode" = auto ]; then if kvm_usable; then mode=kvm; else mode=tcg; fi; fi
    if ! boot_once "$mode"; then
        if [ "$mode" = kvm ]; then echo "KVM boot failed, retrying with TCG"; mode=tcg; boot_once tcg || true; fi
    fi
    GUESTLOG=$LOG/guest-$mode.log.txt
    grep -E "^(check:|guest:|  )" "$GUESTLOG" || true
    local fails splat
    grep -q "GUEST-END" "$GUESTLOG" || fail "guest did not finish (see $GUESTLOG)"
    fails=$(grep -c "^check: .*FAIL" "$GUESTLOG" || true)
    splat=$(grep -E "BUG:|WARNING:|Oops|Kernel panic|KASAN|lockdep|possible recursive locking|circular locking|Call Trace" "$GUESTLOG" | head -5 || true)
    if [ -n "$splat" ]; then
        grep -E -B5 -A30 "BUG:|WARNING:|KASAN|circular locking|recursive locking" "$GUESTLOG" | head -120
        fail "kernel splat in the guest log: $(echo "$splat" | head -1)"
    fi
    [ "$fails" = 0 ] || fail "$fails failed checks"
    [ "$(grep -c '^check: .*: ok' "$GUESTLOG")" -ge 9 ] || fail "too few checks ran"
    verify_klog_host
    RESULT=PASS
}

RESULT="not run"
STEPS=${*:-install bindgen kernel modules user initramfs boot}
for st in $STEPS; do
    CUR_STEP=$st
    case $st in
        install) do_install ;; bindgen) do_bindgen ;; kernel) do_kernel ;;
        modules) do_modules; do_build_errors ;;
        user) do_user; do_readme ;; initramfs) do_initramfs ;; boot) do_boot ;;
        *) echo "unknown step $st" >&2; exit 2 ;;
    esac
done
echo "kernel-test: total $(( $(date +%s) - T0 ))s"
[ "$RESULT" = PASS ] && echo "kernel-test: PASS"
exit 0

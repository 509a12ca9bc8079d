# SPDX-License-Identifier: GPL-2.0
# klog.mk -- klog! and the rsrelay client API for a Rust kernel module's Kbuild (README, "In the
# kernel"). In your module's Kbuild:
#
#   KLOG := /path/to/relay-rs              # this repository
#   include $(KLOG)/klog.mk
#   obj-m += mymod.o
#   $(call klog_client,mymod.o)             # klog! in mymod.rs
#   $(call rsrelay_client,mymod.o)          # optional: a relay channel of your own
#
# and build against the project's Module.symvers:
#   make -C $KDIR M=$PWD LLVM=1 RUSTC=... HOSTRUSTC=... BINDGEN=... \
#        KBUILD_EXTRA_SYMBOLS=$KLOG_BUILD/Module.symvers modules
#
# klog_client OBJ     builds the klog-macros proc macro with the kernel's host rustc and compiles
#                     OBJ with --cfg klog_client --extern klog_macros=...; the module then uses
#                     `#[macro_use] #[path = ".../klog/src/kernel/mod.rs"] mod klog;`.
# rsrelay_client OBJ  generates $(obj)/rsrelay_bindings.rs (rsrelay.h + debugfs dirs, with the
#                     kernel's own bindgen flags) before OBJ; the module declares
#                     `#[path = "rsrelay_bindings.rs"] mod sys;` and
#                     `#[path = ".../relay/src/kernel/client.rs"] mod rsrelay;`.
# The project's own Kbuild includes this file too (KLOG := its source directory).

ifeq ($(KLOG),)
$(error klog.mk: set KLOG to the relay-rs checkout (e.g. KLOG := $$(src)/../relay-rs) before including it)
endif
KLOG := $(abspath $(KLOG))

# ---- the compiler must be the kernel's ----
# A module's Rust code links against the kernel's `core` and `kernel` crates and the proc macro
# is loaded by that same rustc: any other rustc fails with "compiled by an incompatible version
# of rustc" (E0514/E0786). Say so plainly instead.
# Only when the kernel's configuration is loaded (not for `make clean`).
ifneq ($(CONFIG_CC_VERSION_TEXT),)
ifdef CONFIG_RUST
klog_rustc_v := $(shell $(RUSTC) --version 2>/dev/null | head -1)
ifneq ($(klog_rustc_v),$(CONFIG_RUSTC_VERSION_TEXT))
$(error klog.mk: RUSTC=$(RUSTC) is "$(or $(klog_rustc_v),not runnable)" but the kernel in $(abspath $(objtree)) was built with "$(CONFIG_RUSTC_VERSION_TEXT)": pass RUSTC= (and HOSTRUSTC=, RUSTDOC=) naming that compiler, e.g. RUSTC=/usr/bin/rustc on Debian)
endif
klog_hostrustc_v := $(shell $(HOSTRUSTC) --version 2>/dev/null | head -1)
ifneq ($(klog_hostrustc_v),$(CONFIG_RUSTC_VERSION_TEXT))
$(error klog.mk: HOSTRUSTC=$(HOSTRUSTC) is "$(or $(klog_hostrustc_v),not runnable)" but the kernel's rustc is "$(CONFIG_RUSTC_VERSION_TEXT)": the klog-macros proc macro must be built by the same compiler (HOSTRUSTC=$(RUSTC)))
endif
else
$(error klog.mk: the kernel in $(abspath $(objtree)) has no CONFIG_RUST)
endif
endif

# ---- bindgen for module-local headers, with the kernel's own bindgen flags ----
# Every generated file is a complete module (`#[path = "..._bindings.rs"] mod sys;`): the lints
# generated code trips and the kernel's C type aliases come first.
RSR_BINDGEN_PRELUDE := \
	--raw-line '\#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case, dead_code, missing_docs, unreachable_pub, improper_ctypes, unsafe_op_in_unsafe_fn, clippy::all)]' \
	--raw-line 'use kernel::ffi;' \
	--raw-line 'type __kernel_size_t = usize;' \
	--raw-line 'type __kernel_ssize_t = isize;' \
	--raw-line 'type __kernel_ptrdiff_t = isize;'

RSR_BINDGEN_FLAGS := \
	--rust-target 1.68 --use-core --with-derive-default --ctypes-prefix ffi \
	--no-layout-tests --no-debug '.*' --enable-function-attribute-detection \
	--no-doc-comments \
	--blocklist-type '__kernel_s?size_t' --blocklist-type __kernel_ptrdiff_t \
	--opaque-type 'file|inode|dentry|vm_area_struct|vm_fault|poll_table_struct|iov_iter|kiocb|page|rchan|rchan_buf|file_operations' \
	$(RSR_BINDGEN_PRELUDE)

ifdef CONFIG_CC_IS_CLANG
rsr_bindgen_cflags = $(c_flags)
else
rsr_bindgen_cflags = $(filter-out -mno-fp-ret-in-387 -mpreferred-stack-boundary=% \
	-mskip-rax-setup -mgeneral-regs-only -mindirect-branch=thunk-extern \
	-mindirect-branch-register -mfunction-return=thunk-extern -mrecord-mcount \
	-mindirect-branch-cs-prefix -mstack-protector-guard% -fconserve-stack -falign-jumps=% \
	-falign-loops=% -femit-struct-debug-baseonly -fno-ipa-cp-clone -fno-ipa-sra \
	-fno-partial-inlining -fno-reorder-blocks -fno-allow-store-data-races \
	-fzero-call-used-regs=% -fno-stack-clash-protection -fno-inline-functions-called-once \
	-fsanitize=bounds-strict -fstrict-flex-arrays=% -fmin-function-alignment=% \
	-fzero-init-padding-bits=% --param=% --param asan-% \
	-fno-isolate-erroneous-paths-dereference,$(c_flags)) -w --target=x86_64-linux-gnu
endif

quiet_cmd_rsr_bindgen = BINDGEN $@
      cmd_rsr_bindgen = $(BINDGEN) $< $(RSR_BINDGEN_FLAGS) $(RSR_ALLOW) -o $@ -- \
		$(rsr_bindgen_cflags) -fno-builtin -D__BINDGEN__ -DMODULE

ccflags-y += -I$(KLOG)/relay/src/kernel -I$(KLOG)/klog/src/kernel

# ---- klog! clients ----
# The klog-macros proc macro, built by the kernel's own host rustc (it depends on proc_macro
# only), for every module of this directory that uses klog!.
quiet_cmd_klog_macros = HOSTRUSTC $@
      cmd_klog_macros = $(HOSTRUSTC) --edition 2021 -O --crate-type proc-macro \
		--extern proc_macro --crate-name klog_macros -o $@ $<
$(obj)/libklog_macros.so: $(KLOG)/klog-macros/src/lib.rs $(KLOG)/klog/src/fmtspec.rs FORCE
	$(call if_changed,klog_macros)
targets += libklog_macros.so
clean-files += libklog_macros.so
KLOG_CLIENT_FLAGS = --cfg klog_client --extern klog_macros=$(obj)/libklog_macros.so \
	--remap-path-prefix=$(KLOG)/= --remap-path-prefix=$(abspath $(src))/=

klog_client = $(eval RUSTFLAGS_$(1) += $(KLOG_CLIENT_FLAGS))$(eval $(obj)/$(1): $(obj)/libklog_macros.so)

# ---- rsrelay clients (relay/src/kernel/client.rs) ----
RSRELAY_CLIENT_ALLOW := \
	--allowlist-function 'rsrelay_.*|__rsrelay_.*|debugfs_(create_dir|create_file_unsafe|remove)' \
	--allowlist-type 'rsrelay_(callbacks|stats|chan|start)' --allowlist-var 'rsrelay_file_operations'
$(obj)/rsrelay_bindings.rs: RSR_ALLOW := $(RSRELAY_CLIENT_ALLOW)
$(obj)/rsrelay_bindings.rs: $(KLOG)/relay/src/kernel/rsrelay_client.h FORCE
	$(call if_changed_dep,rsr_bindgen)
targets += rsrelay_bindings.rs
clean-files += rsrelay_bindings.rs

rsrelay_client = $(eval $(obj)/$(1): $(obj)/rsrelay_bindings.rs)

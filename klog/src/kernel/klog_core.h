/* SPDX-License-Identifier: GPL-2.0 */
/*
 * klog_core.ko: the callsite registry and the handler pointer of klog! in the kernel.
 * Client modules call klog_register_callsite / klog_emit (through klog/src/kernel/mod.rs); a
 * handler module (klog_relay.ko) registers a struct klog_handler.
 */
#ifndef KLOG_CORE_H
#define KLOG_CORE_H

#include <linux/types.h>

struct dentry;
struct module;

typedef void (*klog_encode_fn)(const void *ctx, u8 *out, size_t len);

struct klog_handler {
	/*
	 * Called with interrupts off (and so inside an RCU read-side section) for every enabled
	 * event: `cs` is the static callsite (layout: klog/src/callsite.rs, #[repr(C)]), `kind` 0
	 * event / 1 raw, `len` the payload length that encode(ctx, slot, len) writes; `types` the
	 * n_types argument type tags.
	 */
	void (*emit)(const struct klog_handler *h, const void *cs, u32 kind, size_t len,
		     klog_encode_fn encode, const void *ctx, const u8 *types, size_t n_types);
	/* Set by klog_register_handler: distinct for every registration. */
	u32 gen;
};

/*
 * Client side. Registration passes the client's layout word (callsite::LAYOUT) and its module;
 * returns 1 enabled, 0 disabled, -EPROTO refused (another layout, logged).
 */
int klog_register_callsite(const void *cs, u32 layout, struct module *owner);
void klog_emit(const void *cs, u32 kind, size_t len, klog_encode_fn encode, const void *ctx,
	       const u8 *types, size_t n_types);

/* Handler side: -EBUSY if one is registered. Unregister waits for in-flight events. */
int klog_register_handler(struct klog_handler *h);
void klog_unregister_handler(struct klog_handler *h);
/* /sys/kernel/debug/klog: the handler puts its files here. */
struct dentry *klog_debugfs_dir(void);

/* Glue helpers of klog_core.ko (core_glue.c). */
unsigned long klog_reg_lock(void);
void klog_reg_unlock(unsigned long flags);
unsigned long klog_irq_save(void);
void klog_irq_restore(unsigned long flags);
void klog_synchronize_rcu(void);
bool klog_within_module(const void *addr, struct module *mod);
const char *klog_module_name(const struct module *mod);
void klog_refuse_layout(const struct module *mod, u32 theirs, u32 ours);
struct dentry *klog_glue_init(void);
void klog_glue_exit(void);

#endif

/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/* Exec rules by file identity. The engine resolves each exact deny and
 * allow rule inside a registered container's own root (symlinks followed
 * within it) and stores the file's device and inode under that container's
 * cgroup: a
 * ruleset is shared by containers of different images, the files are not.
 * A hard link, bind mount, chroot or private mount namespace changes the
 * path of a file, never its identity. */
#ifndef HOLDFAST_FILES_H
#define HOLDFAST_FILES_H

/* The kernel's own view: inode->i_sb->s_dev (MKDEV encoding, major << 20 |
 * minor) and inode->i_ino, as /proc/<pid>/mountinfo and fdinfo report them;
 * bpf.FileID. */
struct file_key {
	__u64 cgroup_id; /* owner cgroup (cgroup.h), not the ruleset */
	__u64 ino;
	__u32 dev;
	__u32 kind; /* FILE_KIND_* */
};

/* file_key.kind: an exact rule's file (denied, or allowed when
 * file_value.allow), or a directory-prefix deny rule's directory
 * (everything below it, by d_parent, is denied). */
#define FILE_KIND_FILE 0
#define FILE_KIND_DIR 1

struct file_value {
	__u32 rule_id;
	__u32 allow; /* 1: on the container's allow list; 0: denied */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct file_key);
	__type(value, struct file_value);
} file_rules SEC(".maps");

/* Set by the loader: FMODE_BACKING's bit for the running kernel (it moved
 * between releases; 0 where files have no backing_file wrapper). */
struct file_config {
	__u32 fmode_backing;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct file_config);
} file_config SEC(".maps");

/* opened_path gives the path and inode of file as the task opened it.
 * overlayfs maps a layer's file, a backing file whose own path is relative
 * to a private clone of the layer; the path the task used (and the one exec
 * is judged by) is its user_path, as /proc/PID/maps shows, and the identity
 * the task sees is the overlay inode. */
static __always_inline void opened_path(struct file *file, struct dentry **d, struct vfsmount **m, struct inode **inode)
{
	*d = BPF_CORE_READ(file, f_path.dentry);
	*m = BPF_CORE_READ(file, f_path.mnt);
	*inode = BPF_CORE_READ(file, f_inode);
	if (!bpf_core_type_exists(struct backing_file))
		return;
	__u32 zero = 0;
	struct file_config *cfg = bpf_map_lookup_elem(&file_config, &zero);

	if (!cfg || !cfg->fmode_backing || !(BPF_CORE_READ(file, f_mode) & cfg->fmode_backing))
		return;
	struct backing_file *bf = (struct backing_file *)file;
	struct vfsmount *um = BPF_CORE_READ(bf, user_path.mnt);
	struct dentry *ud = BPF_CORE_READ(bf, user_path.dentry);

	/* A path of its own whose mount is of its dentry's filesystem; else
	 * the bit is not FMODE_BACKING here and the file is judged as is. */
	if (um && ud && ud != *d && BPF_CORE_READ(um, mnt_sb) == BPF_CORE_READ(ud, d_sb)) {
		*d = ud;
		*m = um;
		*inode = BPF_CORE_READ(ud, d_inode);
	}
}

static __always_inline struct file_value *lookup_identity(__u64 owner_cgroup, struct inode *inode)
{
	struct file_key key = {
		.cgroup_id = owner_cgroup,
		.ino = BPF_CORE_READ(inode, i_ino),
		.dev = BPF_CORE_READ(inode, i_sb, s_dev),
		.kind = FILE_KIND_FILE,
	};

	if (!owner_cgroup)
		return NULL;
	return bpf_map_lookup_elem(&file_rules, &key);
}

/* One lookup: is this file, by identity, denied in the owner's container? */
static __always_inline bool match_identity(__u64 owner_cgroup, struct inode *inode, __u32 *rule_id)
{
	struct file_value *v = lookup_identity(owner_cgroup, inode);

	if (!v || v->allow)
		return false;
	*rule_id = v->rule_id;
	return true;
}

/* Is this file, by identity, on the owner container's allow list? */
static __always_inline bool allowed_identity(__u64 owner_cgroup, struct inode *inode)
{
	struct file_value *v = lookup_identity(owner_cgroup, inode);

	return v && v->allow;
}

#endif

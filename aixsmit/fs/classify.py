"""System data, user data, virtual and remote file systems (the guide's first step).

* ``remote``: a network file system (NFS, CIFS/SMB, sshfs, …); on AIX any row with a node.
* ``virtual``: kernel and memory file systems (proc, sysfs, cgroup, devpts, tmpfs outside the
  system list, …): nothing on them belongs in a backup, and unmounting them is refused.
* ``system``: the mount point is in the system list (the host's defaults or the config file).
* ``user``: every other local file system — what the guide unmounts before ``mksysb``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .mounts import Mount

SYSTEM, USER, VIRTUAL, REMOTE = "system", "user", "virtual", "remote"
CLASSES = (SYSTEM, USER, VIRTUAL, REMOTE)

# Kernel pseudo file systems: virtual wherever they are mounted.
PSEUDO_VFS = frozenset(
    """proc procfs sysfs cgroup cgroup2 devtmpfs devpts mqueue autofs ahafs securityfs debugfs
    tracefs pstore bpf hugetlbfs configfs fusectl binfmt_misc efivarfs selinuxfs nsfs rpc_pipefs
    nfsd sockfs pipefs namefs devfs cpuset""".split()
)
# Memory- or image-backed: virtual unless the system list names their mount point (/tmp on tmpfs).
# Unmounting a tmpfs destroys its contents, which is one more reason not to treat it as user data.
MEMORY_VFS = frozenset("tmpfs ramfs squashfs overlay erofs fuse".split())
REMOTE_VFS = frozenset(
    """nfs nfs3 nfs4 stnfs cifs smb smb3 smbfs afs ceph glusterfs lustre ncpfs 9p davfs
    fuse.sshfs fuse.glusterfs fuse.s3fs fuse.rclone fuse.davfs2 fuse.cephfs sshfs""".split()
)


def classify(mount: Mount, system_fs: Iterable[str]) -> str:
    """The data class of one mount (one of ``CLASSES``); ``system_fs`` is the system list."""
    return classify_all([mount], system_fs)[0]


_MEMORY = "memory"  # virtual, unless the system list names its mount point


def _by_type(vfs: str) -> str:
    """What a local mount's type alone says: remote, virtual, memory-backed or user."""
    base = vfs.split(".", 1)[0]
    if vfs in REMOTE_VFS or base in REMOTE_VFS - {"fuse"}:
        return REMOTE
    if vfs in PSEUDO_VFS or base in PSEUDO_VFS:
        return VIRTUAL
    if vfs in MEMORY_VFS or base in MEMORY_VFS:
        return _MEMORY
    return USER


def classify_all(mounts: Iterable[Mount], system_fs: Iterable[str]) -> list[str]:
    """The data class of each mount, in order, as :func:`classify` gives it: what the type
    says is worked out once per type, the system list is looked up by mount point."""
    system = frozenset(system_fs)
    by_type: dict[str, str] = {}
    out: list[str] = []
    add = out.append
    for m in mounts:
        if m.node:
            add(REMOTE)
            continue
        kind = by_type.get(m.vfs)
        if kind is None:
            kind = by_type[m.vfs] = _by_type(m.vfs)
        if kind == REMOTE or kind == VIRTUAL:
            add(kind)
        elif m.mount_point in system:
            add(SYSTEM)
        else:
            add(VIRTUAL if kind == _MEMORY else USER)
    return out

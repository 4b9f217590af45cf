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
    vfs = mount.vfs
    base = vfs.split(".", 1)[0]
    if mount.node or vfs in REMOTE_VFS or base in REMOTE_VFS - {"fuse"}:
        return REMOTE
    if vfs in PSEUDO_VFS or base in PSEUDO_VFS:
        return VIRTUAL
    if mount.mount_point in set(system_fs):
        return SYSTEM
    if vfs in MEMORY_VFS or base in MEMORY_VFS:
        return VIRTUAL
    return USER

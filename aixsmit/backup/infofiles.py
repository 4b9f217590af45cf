"""The information files an image begins with, as on AIX: ``./image.data`` (mksysb) or
``./tmp/vgdata/VG/VG.data`` (savevg) in AIX's stanza format, a copy of fstab, LVM's own
description of the group (savevg), and with -m the map of each logical volume.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..fs.table import System
from ..osutil import which, write_text
from . import image_data

if TYPE_CHECKING:
    from .engine import ImageRequest


def _uname() -> str:
    u = os.uname()
    return f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}"


def fs_facts(path: str) -> tuple[int, int, int, int]:
    """(size, used, block size) in bytes of the file system at ``path``, and its inodes in use."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0, 0, 0, 0
    return (st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_frsize,
            max(0, st.f_files - st.f_ffree))


def _uuid(system: System, device: str) -> str:
    if system.host.name != "linux" or not device.startswith("/dev/"):
        return ""
    from ..host.linux import device_uuid

    return device_uuid(device)


def map_member(req: ImageRequest, lv_name: str) -> str:
    """Where -m puts a logical volume's map in the image (AIX: /tmp/vgdata/rootvg/hd4.map)."""
    return f"{vgdata_dir(req)}/{lv_name.replace('/', '_')}.map"


def information_file(req: ImageRequest, when: str, mapped: set[str] = frozenset()) -> str:
    """``image.data`` (rootvg) or ``VG.data`` in AIX's stanza format, with Linux facts added.
    ``mapped``: the logical volumes with a map file (-m)."""
    vg = req.vg
    mounted = vg.mounted
    uservgs = " ".join(g for g in req.system.config.volume_groups) or ""
    stanzas: image_data.Stanzas = [
        ("image_data", {
            "IMAGE_TYPE": "tar",
            "DATE_TIME": when,
            "UNAME_INFO": _uname(),
            "PRODUCT_TAPE": "no",
            "USERVG_LIST": uservgs,
            "PLATFORM": req.system.host.name,
            "BACKUP_PROGRAM": f"aixsmit {req.program}",
            "VG_DATA_ONLY": "yes" if req.structure_only else "no",
            "ROOT": req.system.root,
        }),
        ("logical_volume_policy", {"SHRINK": "no", "EXACT_FIT": "no"}),
        ("ils_data", {"LANG": os.environ.get("LANG", "C")}),
        ("vg_data", {
            "VGNAME": vg.name,
            "PPSIZE": str(vg.pp_size_mb),
            "VARYON": "yes",
            "VG_SOURCE_DISK_LIST": " ".join(sorted({lv.device for lv in mounted if lv.device})),
            "LVM_VGNAME": vg.lvm_name,
        }),
    ]
    for lv in mounted:
        size, used, bsize, _ = fs_facts(lv.entry.mount.path)
        stanzas.append(("lv_data", {
            "VOLUME_GROUP": vg.name,
            "LOGICAL_VOLUME": lv.name,
            "TYPE": lv.type,
            "LPs": str(lv.lps),
            "MOUNT_POINT": lv.mount_point,
            "MAPFILE": map_member(req, lv.name)[1:] if lv.name in mapped else "",
        }))
        stanzas.append(("fs_data", {
            "FS_NAME": lv.mount_point,
            "FS_SIZE": str(size // 512),
            "FS_MIN_SIZE": str(used // 512),
            "FS_LV": lv.device,
            "FS_FS": str(bsize),
            "FS_VFS": lv.type,
            "FS_UUID": _uuid(req.system, lv.device),
            "FS_OPTIONS": ",".join(lv.entry.mount.options),
            "FS_SIZE_BYTES": str(size),
            "FS_USED_BYTES": str(used),
        }))
    if req.program == "savevg":
        stanzas.append(("post_restvg", {"RESTVG_FILE": ""}))
    else:
        stanzas.append(("post_install_data", {"BOSINST_FILE": ""}))
    cmd = "mkszfile" if req.program == "mksysb" else f"mkvgdata {vg.name}"
    return image_data.dump(stanzas, header=f"Command used for {cmd}: aixsmit cmd {req.program}")


def info_member(req: ImageRequest) -> str:
    return "./image.data" if req.program == "mksysb" else f"./tmp/vgdata/{req.vg.name}/{req.vg.name}.data"


def vgdata_dir(req: ImageRequest) -> str:
    return f"./tmp/vgdata/{req.vg.name}"


def stage(req: ImageRequest, stage_dir: str, when: str, maps: dict[str, str],
          emit: Callable[[str, str], None]) -> list[str]:
    """Write the information files under ``stage_dir`` (the image's ``./``), ``maps`` being
    the -m maps by logical volume name. Returns their ``./names``, in the order the image holds
    them. A vgcfgbackup that fails is said on stderr and the file left out."""
    vgdir = os.path.join(stage_dir, vgdata_dir(req)[2:])
    os.makedirs(vgdir)
    info_path = os.path.join(stage_dir, info_member(req)[2:])
    os.makedirs(os.path.dirname(info_path), exist_ok=True)
    prog, vg = req.program, req.vg
    from ..safefile import INFO_FILE_LIMIT, read_bounded, write_file

    if req.new_data or prog == "savevg":
        text = information_file(req, when, set(maps))
        write_text(info_path, text)
        if prog == "mksysb":
            # As AIX's mkszfile: /image.data is written too, so that a later mksysb without -i
            # ("Generate new /image.data file? no") uses it.
            path = os.path.join(req.system.root, "image.data")
            try:
                write_file(path, text.encode())
            except OSError as exc:
                # (a read-only root, say: the image still holds its own copy)
                emit(f"{prog}: {path} was not written: {exc.strerror}; the image holds its information file.",
                     "stderr")
    else:
        data = read_bounded(os.path.join(req.system.root, "image.data"), INFO_FILE_LIMIT, "information file")
        with open(info_path, "wb") as f:
            f.write(data)
    fstab = os.path.join(req.system.root, "etc", "fstab")
    staged = [info_member(req)]
    if os.path.isfile(fstab):
        data = read_bounded(fstab, INFO_FILE_LIMIT, "fstab")
        with open(os.path.join(vgdir, "fstab"), "wb") as f:
            f.write(data)
        staged.append(f"{vgdata_dir(req)}/fstab")
    if req.program == "savevg" and vg.source == "lvm" and vg.lvm_name and which("vgcfgbackup"):
        # LVM's own description of the group (PVs, LVs, extents), for vgcfgrestore.
        res = subprocess.run(["vgcfgbackup", "-f", os.path.join(vgdir, f"{vg.name}.vgcfg"), vg.lvm_name],
                             capture_output=True, text=True)
        if res.returncode == 0:
            staged.append(f"{vgdata_dir(req)}/{vg.name}.vgcfg")
        else:
            emit(f"{prog}: vgcfgbackup {vg.lvm_name} failed: {res.stderr.strip()}", "stderr")
    for name, text in maps.items():
        member = map_member(req, name)
        write_text(os.path.join(stage_dir, member[2:]), text)
        staged.append(member)
    return staged

"""Volume groups: AIX ``lsvg`` output, LVM reports, or groups named in the config file.

On Linux a mounted, local, non-virtual file system belongs to the first of:
1. a group in the config file that names its mount point (``volume_groups: {datavg: [/data]}``);
2. the LVM volume group whose logical volume it is mounted from — except the group that
   holds ``/``, which is ``rootvg`` (its LVM name is kept in ``lvm_name``);
3. ``rootvg``.
So ``rootvg`` is the operating system plus every user file system no other group claims — which
is why the guide unmounts user file systems before ``mksysb``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from ..errors import AixsmitError, ParseError
from ..osutil import which
from . import fstab
from .classify import SYSTEM, USER
from .table import Entry, System, top

PP_SIZE_MB = 4  # the notional partition size shown for groups that are not LVM


@dataclass(frozen=True)
class LogicalVolume:
    name: str
    type: str
    lps: int
    pps: int
    pvs: int
    state: str  # open/syncd, closed/syncd
    mount_point: str  # relative to --root; N/A when none
    device: str = ""
    size: int = 0  # bytes, when known
    entry: Entry | None = field(default=None, compare=False, repr=False)

    @property
    def mounted(self) -> bool:
        return self.state.startswith("open") and self.entry is not None

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "lps": self.lps, "pps": self.pps, "pvs": self.pvs,
                "state": self.state, "mount_point": self.mount_point, "device": self.device, "size": self.size}


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    active: bool
    lvs: tuple[LogicalVolume, ...]
    source: str  # rootvg, config, lvm, aix
    pp_size_mb: int = PP_SIZE_MB
    lvm_name: str = ""

    @property
    def mounted(self) -> list[LogicalVolume]:
        return [lv for lv in self.lvs if lv.mounted]

    def to_json(self) -> dict:
        return {"name": self.name, "active": self.active, "source": self.source, "pp_size_mb": self.pp_size_mb,
                "lvm_name": self.lvm_name, "lvs": [lv.to_json() for lv in self.lvs]}


# --- AIX lsvg ------------------------------------------------------------------------------

LSVG_L_HEADER = "LV NAME             TYPE       LPs     PPs     PVs  LV STATE      MOUNT POINT"


def parse_lsvg_l(text: str) -> tuple[str, list[LogicalVolume]]:
    """``lsvg -l VG`` (aix-smit.md §3.3): ``vg:``, the header, then 7 whitespace-split columns."""
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines or not lines[0].rstrip().endswith(":"):
        raise ParseError("line 1: expected 'vgname:'")
    vg = lines[0].strip()[:-1]
    lvs = []
    for lineno, line in enumerate(lines[1:], 2):
        tokens = line.split()
        if tokens[:2] == ["LV", "NAME"]:
            continue
        if len(tokens) < 7:
            raise ParseError(f"line {lineno}: expected LV NAME TYPE LPs PPs PVs 'LV STATE' 'MOUNT POINT': {line[:70]!r}")
        try:
            lps, pps, pvs = int(tokens[2]), int(tokens[3]), int(tokens[4])
        except ValueError:
            raise ParseError(f"line {lineno}: LPs, PPs and PVs must be numbers: {line[:70]!r}")
        lvs.append(LogicalVolume(tokens[0], tokens[1], lps, pps, pvs, tokens[5], " ".join(tokens[6:])))
    return vg, lvs


def format_lsvg_l(vg: VolumeGroup) -> str:
    lines = [f"{vg.name}:", LSVG_L_HEADER]
    for lv in vg.lvs:
        lines.append(f"{lv.name:<19} {lv.type:<10} {lv.lps:<7} {lv.pps:<7} {lv.pvs:<4} {lv.state:<13} {lv.mount_point}")
    return "\n".join(lines)


def _aix_groups(system: System) -> list[VolumeGroup]:
    from ..host.common import run

    names = run(["lsvg"])
    if names.rc != 0:
        raise AixsmitError(f"lsvg: {names.message}")
    active = run(["lsvg", "-o"])
    on = set(active.stdout.split()) if active.rc == 0 else set()
    table = {e.mount_point: e for e in system.table()}
    groups = []
    for name in names.stdout.split():
        res = run(["lsvg", "-l", name])
        lvs: list[LogicalVolume] = []
        if res.rc == 0:
            _, parsed = parse_lsvg_l(res.stdout)
            for lv in parsed:
                e = table.get(lv.mount_point)
                lvs.append(LogicalVolume(lv.name, lv.type, lv.lps, lv.pps, lv.pvs, lv.state, lv.mount_point,
                                         device=f"/dev/{lv.name}", entry=e if lv.state.startswith("open") else None))
        groups.append(VolumeGroup(name, name in on, tuple(lvs), "aix"))
    return groups


# --- LVM -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class LvmLv:
    name: str
    vg: str
    size: int
    paths: tuple[str, ...]


def parse_lvs_json(text: str) -> list[LvmLv]:
    """``lvs --reportformat json --units b --nosuffix -o lv_name,vg_name,lv_size,lv_path,lv_dm_path``."""
    import json

    try:
        data = json.loads(text)
        rows = [r for rep in data["report"] for r in rep.get("lv", [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise ParseError(f"lvs --reportformat json: unexpected output ({exc})")
    out = []
    for r in rows:
        size = str(r.get("lv_size", "0")).rstrip("B")
        out.append(LvmLv(r["lv_name"], r["vg_name"], int(float(size or 0)),
                         tuple(p for p in (r.get("lv_path", ""), r.get("lv_dm_path", "")) if p)))
    return out


def parse_vgs_json(text: str) -> list[dict]:
    import json

    try:
        data = json.loads(text)
        return [r for rep in data["report"] for r in rep.get("vg", [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise ParseError(f"vgs --reportformat json: unexpected output ({exc})")


def _lvm_report() -> tuple[list[dict], list[LvmLv]]:
    if not which("vgs") or not which("lvs"):
        return [], []
    from ..host.common import run

    vgs = run(["vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
               "-o", "vg_name,vg_size,vg_free,vg_extent_size,pv_count,lv_count,vg_uuid"], timeout=60)
    lvs = run(["lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
               "-o", "lv_name,vg_name,lv_size,lv_path,lv_dm_path"], timeout=60)
    if vgs.rc != 0 or lvs.rc != 0:
        return [], []  # no LVM here (or no permission): config and rootvg still work
    return parse_vgs_json(vgs.stdout), parse_lvs_json(lvs.stdout)


def _same_device(a: str, b: str) -> bool:
    return a == b or (a.startswith("/dev/") and b.startswith("/dev/") and os.path.realpath(a) == os.path.realpath(b))


def _lv_for(e: Entry, name: str, pp_mb: int) -> LogicalVolume:
    try:
        st = os.statvfs(e.mount.path)
        size = st.f_blocks * st.f_frsize
    except OSError:
        size = 0
    lps = max(1, math.ceil(size / (pp_mb * 1024 * 1024))) if size else 0
    return LogicalVolume(name, e.mount.vfs, lps, lps, 1, "open/syncd", e.mount_point, e.mount.device, size, e)


def _linux_groups(system: System) -> list[VolumeGroup]:
    table = [e for e in system.table() if e.cls in (SYSTEM, USER)]
    vg_rows, lvm_lvs = _lvm_report()
    extent = {r["vg_name"]: max(1, int(float(str(r.get("vg_extent_size", "4194304")).rstrip("B"))) // (1024 * 1024))
              for r in vg_rows}
    claimed: dict[str, str] = {}
    for name, mps in system.config.volume_groups.items():
        for mp in mps:
            claimed.setdefault(mp, name)

    def lvm_of(e: Entry) -> LvmLv | None:
        for lv in lvm_lvs:
            if any(_same_device(e.mount.device, p) for p in lv.paths):
                return lv
        return None

    root_entry = next((e for e in reversed(table) if e.mount_point == "/"), None)
    root_lvm = lvm_of(root_entry) if root_entry else None
    root_vg_lvm = root_lvm.vg if root_lvm else ""

    members: dict[str, list[LogicalVolume]] = {"rootvg": []}
    sources: dict[str, str] = {"rootvg": "rootvg"}
    for name in system.config.volume_groups:
        members.setdefault(name, [])
        sources[name] = "config"
    for r in vg_rows:
        if r["vg_name"] != root_vg_lvm and r["vg_name"] not in members:
            members[r["vg_name"]] = []
            sources[r["vg_name"]] = "lvm"
    for e in top(table):
        lv = lvm_of(e)
        if e.mount_point in claimed:
            group = claimed[e.mount_point]
        elif lv is not None and lv.vg != root_vg_lvm:
            group = lv.vg
        else:
            group = "rootvg"
        pp = extent.get(lv.vg, PP_SIZE_MB) if lv else PP_SIZE_MB
        name = lv.name if lv else os.path.basename(e.mount.device) or e.mount.device
        members[group].append(_lv_for(e, name, pp))
    # Configured file systems that are not mounted are still part of their group (closed).
    known = fstab.by_mount_point(system.root)
    for name, mps in system.config.volume_groups.items():
        have = {lv.mount_point for lv in members[name]}
        for mp in mps:
            if mp not in have:
                fe = known.get(mp)
                dev, vfs = (fe.device, fe.vfs) if fe else ("", "N/A")
                members[name].append(LogicalVolume(os.path.basename(dev) or "N/A", vfs, 0, 0, 1, "closed/syncd", mp, dev))
    for r in vg_rows:
        if r["vg_name"] in members:
            have = {lv.name for lv in members[r["vg_name"]]}
            for lv in lvm_lvs:
                if lv.vg == r["vg_name"] and lv.name not in have:
                    pp = extent.get(lv.vg, PP_SIZE_MB)
                    lps = max(1, math.ceil(lv.size / (pp * 1024 * 1024)))
                    members[r["vg_name"]].append(LogicalVolume(lv.name, "N/A", lps, lps, 1, "closed/syncd", "N/A",
                                                               lv.paths[0] if lv.paths else "", lv.size))
    groups = []
    for name, lvs in members.items():
        active = any(lv.mounted for lv in lvs) or sources[name] == "lvm"
        pp = extent.get(root_vg_lvm if name == "rootvg" else name, PP_SIZE_MB)
        groups.append(VolumeGroup(name, active, tuple(lvs), sources[name], pp,
                                  lvm_name=root_vg_lvm if name == "rootvg" else (name if sources[name] == "lvm" else "")))
    return groups


def volume_groups(system: System) -> list[VolumeGroup]:
    return _aix_groups(system) if system.host.name == "aix" else _linux_groups(system)


def find(system: System, name: str, groups: list[VolumeGroup] | None = None) -> VolumeGroup:
    for vg in groups if groups is not None else volume_groups(system):
        if vg.name == name:
            return vg
    raise AixsmitError(f"0516-306 lsvg: Unable to find volume group {name} in the Device Configuration Database.")

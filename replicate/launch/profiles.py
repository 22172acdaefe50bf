"""Cluster profiles: ``slurm/clusters/<name>.yaml`` -> a validated dict.

A profile holds everything site-specific about submitting to SLURM (partition, account,
resources, time limit, array width).  ``default.yaml`` documents and sets every key; a site
profile lists only what differs from it (missing keys are taken from ``default.yaml``).
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

#: the keys a profile may hold, with the type each value must have (None = may be null)
PROFILE_KEYS: Dict[str, tuple] = {
    "partition": (str, type(None)),
    "account": (str, type(None)),
    "gpus_per_job": (int,),
    "cpus_per_task": (int,),
    "mem_gb": (numbers.Real,),
    "timeout_min": (int,),
    "constraint": (str, type(None)),
    "array_parallelism": (int,),
    "signal_delay_s": (int,),
    "requeue": (bool,),
    "max_requeues_without_progress": (int,),
    "additional": (dict,),
    "setup": (list,),
    "environments": (dict,),
}
#: the Python environments a job can run in (replicate/environments.py) and their keys
ENVIRONMENT_NAMES = ("classification", "segmentation")
ENVIRONMENT_KEYS = {"setup": (list,), "python": (str, type(None))}
_MIN = {"gpus_per_job": 0, "cpus_per_task": 1, "mem_gb": 0.001, "timeout_min": 1,
        "array_parallelism": 1, "signal_delay_s": 0, "max_requeues_without_progress": 1}
#: SLURM sends the time-limit signal on its scheduler tick, up to this much earlier than asked
#: (sbatch(1), --signal: "may be sent up to 60 seconds earlier than specified")
SIGNAL_EARLY_S = 60
#: an allocation must leave at least this long between job start and the time-limit signal
#: (python + torch start, data loading, at least one epoch of a tiny run)
MIN_WORK_S = 90


class ProfileError(ValueError):
    """A cluster profile is missing or malformed; the message names the file and the fix."""


def clusters_dir() -> Path:
    """``slurm/clusters`` of the checkout this package was imported from."""
    return Path(__file__).resolve().parents[2] / "slurm" / "clusters"


def available_profiles(directory: Optional[Path] = None) -> List[str]:
    d = Path(directory) if directory is not None else clusters_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def _read_yaml(path: Path) -> dict:
    import yaml  # pyyaml comes with mmengine

    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: a profile must be a mapping of keys to values, "
                           f"got {type(raw).__name__}")
    return raw


def _validate(raw: dict, path: Path) -> dict:
    unknown = sorted(set(raw) - set(PROFILE_KEYS))
    if unknown:
        raise ProfileError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                           f"{', '.join(PROFILE_KEYS)} (other sbatch options go under "
                           f"'additional')")
    for key, value in raw.items():
        types = PROFILE_KEYS[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ProfileError(f"{path}: '{key}' must be {want}, got {value!r}")
        if key in _MIN and value < _MIN[key]:
            raise ProfileError(f"{path}: '{key}' must be >= {_MIN[key]}, got {value!r}")
    if "setup" in raw and not all(isinstance(s, str) for s in raw["setup"]):
        raise ProfileError(f"{path}: 'setup' must be a list of shell lines (strings)")
    if "additional" in raw and not all(isinstance(k, str) for k in raw["additional"]):
        raise ProfileError(f"{path}: 'additional' keys must be sbatch option names (strings)")
    for env, spec in (raw.get("environments") or {}).items():
        where = f"{path}: 'environments.{env}'"
        if env not in ENVIRONMENT_NAMES:
            raise ProfileError(f"{path}: unknown environment {env!r} under 'environments'; "
                               f"allowed: {', '.join(ENVIRONMENT_NAMES)}")
        if not isinstance(spec, dict) or set(spec) - set(ENVIRONMENT_KEYS):
            raise ProfileError(f"{where} must be a mapping with keys "
                               f"{', '.join(ENVIRONMENT_KEYS)}, got {spec!r}")
        if not isinstance(spec.get("setup", []), list) or \
                not all(isinstance(x, str) for x in spec.get("setup", [])):
            raise ProfileError(f"{where}.setup must be a list of shell lines (strings)")
        if not isinstance(spec.get("python"), (str, type(None))):
            raise ProfileError(f"{where}.python must be a command (string) or null")
    return raw


def load_profile(name_or_path: Union[str, Path],
                 directory: Optional[Path] = None) -> Dict[str, Any]:
    """Load a cluster profile by name (``slurm/clusters/<name>.yaml``) or by file path.

    Keys the profile leaves out come from ``default.yaml`` next to it (or in ``directory``).
    Returns a plain dict with every key of :data:`PROFILE_KEYS` plus ``name`` and ``source``.
    """
    d = Path(directory) if directory is not None else clusters_dir()
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or "/" in s:
        path = Path(s)
        if not path.is_file():
            raise ProfileError(f"cluster profile file {path} not found")
    else:
        path = d / f"{s}.yaml"
        if not path.is_file():
            avail = available_profiles(d)
            raise ProfileError(
                f"unknown cluster profile '{s}': no {path}; available: "
                f"{', '.join(avail) if avail else '(none)'} (or pass a path to a .yaml file; "
                f"copy slurm/clusters/example-site.yaml to add your site)")
    default_path = (path.parent if (path.parent / "default.yaml").is_file() else d) / "default.yaml"
    prof: dict = {"setup": [], "environments": {}}
    envs: dict = {}
    for p in ([default_path] if default_path.is_file() else []) + [path]:
        raw = _validate(_read_yaml(p), p)
        for env, spec in (raw.get("environments") or {}).items():  # merged per environment
            envs.setdefault(env, {}).update(spec)
        prof.update(raw)
    prof["environments"] = {e: {"setup": list((envs.get(e) or {}).get("setup") or []),
                                "python": (envs.get(e) or {}).get("python")}
                            for e in ENVIRONMENT_NAMES}
    missing = sorted(set(PROFILE_KEYS) - set(prof))
    if missing:
        raise ProfileError(f"{path}: key(s) {', '.join(missing)} missing (and not set in "
                           f"{default_path}): add them")
    work_s = prof["timeout_min"] * 60 - prof["signal_delay_s"]
    if work_s < MIN_WORK_S:
        raise ProfileError(
            f"{path}: timeout_min {prof['timeout_min']} and signal_delay_s "
            f"{prof['signal_delay_s']} leave {work_s} s between a job's start and its time-limit "
            f"signal (SLURM may send it up to {SIGNAL_EARLY_S} s earlier still): under "
            f"{MIN_WORK_S} s a job can spend every allocation starting up; raise timeout_min or "
            f"lower signal_delay_s")
    prof["additional"] = dict(prof["additional"])
    prof["setup"] = list(prof["setup"])
    prof["name"] = path.stem
    prof["source"] = str(path)
    return prof
